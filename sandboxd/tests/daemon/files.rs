//! Files: round trips, listings, removal, error codes, and streaming transfers.

use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::upload_request::Part;
use agent_runtime_proto::v1::{
    DownloadRequest, ListDirRequest, MakeDirRequest, ReadFileRequest, RemoveRequest, StatRequest,
    UploadHeader, UploadRequest, WriteFileRequest,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{noise, sha256, wait_none, Daemon, HUNG};

fn write(path: &str, content: &[u8]) -> WriteFileRequest {
    WriteFileRequest {
        path: path.into(),
        content: content.to_vec(),
        ..WriteFileRequest::default()
    }
}

fn read(path: &str) -> ReadFileRequest {
    ReadFileRequest {
        path: path.into(),
        max_bytes: 0,
    }
}

#[tokio::test]
async fn files_round_trip_with_binary_bytes_and_new_parents() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();

    let written = client
        .write_file(write("a/b/c/bin.dat", &bytes))
        .await?
        .into_inner();
    let abs = daemon.workspace().join("a/b/c/bin.dat");
    assert_eq!(written.path, abs.display().to_string());
    assert_eq!(written.size, 10_000);
    assert_eq!(written.sha256, sha256(&bytes));
    assert_eq!(std::fs::read(&abs)?, bytes);

    let got = client.read_file(read("a/b/c/bin.dat")).await?.into_inner();
    assert_eq!(got.content, bytes);
    assert_eq!((got.size, got.is_text), (10_000, false));
    assert_eq!(got.sha256, sha256(&bytes));

    // Absolute paths are used as given.
    let got = client
        .read_file(read(&abs.display().to_string()))
        .await?
        .into_inner();
    assert_eq!(got.content, bytes);

    client
        .write_file(write("notes.txt", "héllo\n".as_bytes()))
        .await?;
    let mut more = write("notes.txt", b"more\n");
    more.append = true;
    let appended = client.write_file(more).await?.into_inner();
    assert_eq!(appended.size, "héllo\nmore\n".len() as u64);
    assert_eq!(appended.sha256, sha256(b"more\n"));
    let got = client.read_file(read("notes.txt")).await?.into_inner();
    assert!(got.is_text);
    assert_eq!(String::from_utf8(got.content)?, "héllo\nmore\n");

    let mut private = write("secret", b"x");
    private.mode = 0o600;
    client.write_file(private).await?;
    let info = client
        .stat(StatRequest {
            path: "secret".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (info.r#type.as_str(), info.mode, info.size),
        ("file", 0o600, 1)
    );
    let info = client
        .stat(StatRequest {
            path: "notes.txt".into(),
        })
        .await?
        .into_inner();
    assert_eq!(info.mode, 0o644);
    assert!(info.modified_at.ends_with('Z'), "{info:?}");

    // No temporary files are left beside the written ones.
    let leftovers: Vec<_> = std::fs::read_dir(daemon.workspace())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

#[tokio::test]
async fn file_errors_have_the_right_codes_and_say_what_happened() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let ws = daemon.workspace().display().to_string();

    let err = client.read_file(read("missing.txt")).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("read a missing file"))?;
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.message(),
        format!("no such file or directory: {ws}/missing.txt")
    );

    std::fs::create_dir(daemon.workspace().join("dir"))?;
    let err = client.read_file(read("dir")).await.err();
    assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));

    for path in ["", "a\0b"] {
        let err = client.read_file(read(path)).await.err();
        assert_eq!(
            err.map(|e| e.code()),
            Some(Code::InvalidArgument),
            "{path:?}"
        );
    }

    std::fs::write(daemon.workspace().join("big"), vec![0u8; 2048])?;
    let err = client
        .read_file(ReadFileRequest {
            path: "big".into(),
            max_bytes: 1024,
        })
        .await
        .err();
    let err = err.ok_or_else(|| anyhow::anyhow!("read past max_bytes"))?;
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("use Download"), "{err:?}");

    // sysfs refuses new files even to root.
    let err = client
        .write_file(write("/sys/agent-runtime-test", b"x"))
        .await
        .err();
    let err = err.ok_or_else(|| anyhow::anyhow!("wrote into /sys"))?;
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().starts_with(
            "permission denied: /sys/agent-runtime-test (the sandbox user can write only under"
        ),
        "{err:?}"
    );

    let err = client.write_file(write("dir", b"x")).await.err();
    assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));

    client.write_file(write("plain", b"x")).await?;
    let err = client.write_file(write("plain/below", b"x")).await.err();
    assert!(
        matches!(
            err.as_ref().map(|e| e.code()),
            Some(Code::InvalidArgument | Code::AlreadyExists)
        ),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn directories_list_sorted_and_remove_carefully() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let ws = daemon.workspace();
    std::fs::write(ws.join("b.txt"), b"bb")?;
    std::fs::write(ws.join("a.txt"), b"a")?;
    std::fs::write(ws.join(".hidden"), b"")?;
    std::fs::create_dir(ws.join("c"))?;
    std::os::unix::fs::symlink("a.txt", ws.join("link"))?;

    let list = |hidden| ListDirRequest {
        path: String::new(),
        include_hidden: hidden,
    };
    let listing = client.list_dir(list(false)).await?.into_inner();
    assert_eq!(listing.path, ws.display().to_string());
    assert!(!listing.truncated);
    let summary: Vec<_> = listing
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.r#type.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("a.txt", "file"),
            ("b.txt", "file"),
            ("c", "directory"),
            ("link", "symlink")
        ]
    );
    assert_eq!(listing.entries[1].size, 2);
    assert_eq!(
        listing.entries[1].path,
        ws.join("b.txt").display().to_string()
    );
    let listing = client.list_dir(list(true)).await?.into_inner();
    assert_eq!(listing.entries[0].name, ".hidden");

    let err = client
        .list_dir(ListDirRequest {
            path: "a.txt".into(),
            include_hidden: false,
        })
        .await
        .err();
    let err = err.ok_or_else(|| anyhow::anyhow!("listed a file"))?;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("not a directory"), "{err:?}");

    let made = client
        .make_dir(MakeDirRequest {
            path: "c/d/e".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (made.name.as_str(), made.r#type.as_str()),
        ("e", "directory")
    );
    let err = client
        .make_dir(MakeDirRequest {
            path: "a.txt".into(),
        })
        .await
        .err();
    assert_eq!(err.map(|e| e.code()), Some(Code::AlreadyExists));

    let remove = |path: &str, recursive| RemoveRequest {
        path: path.into(),
        recursive,
    };
    let err = client.remove(remove("c", false)).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("removed a full directory"))?;
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("(pass recursive)"), "{err:?}");
    assert!(client.remove(remove("c", true)).await?.into_inner().success);
    assert!(!ws.join("c").exists());

    client.remove(remove("link", false)).await?;
    assert!(
        ws.join("a.txt").exists(),
        "removing a link keeps its target"
    );
    client.remove(remove("a.txt", false)).await?;
    assert!(!ws.join("a.txt").exists());

    let err = client.remove(remove("a.txt", false)).await.err();
    assert_eq!(err.map(|e| e.code()), Some(Code::NotFound));
    for root in [".", "", &ws.display().to_string()] {
        let err = client.remove(remove(root, true)).await.err();
        assert_eq!(
            err.map(|e| e.code()),
            Some(Code::InvalidArgument),
            "{root:?}"
        );
    }
    assert!(ws.join("b.txt").exists());
    Ok(())
}

async fn upload(
    client: &mut SandboxClient<Channel>,
    path: &str,
    data: &[u8],
    sha256: &str,
) -> Result<agent_runtime_proto::v1::UploadResponse, tonic::Status> {
    let mut messages = vec![UploadRequest {
        part: Some(Part::Header(UploadHeader {
            path: path.into(),
            mode: 0,
            sha256: sha256.into(),
        })),
    }];
    messages.extend(data.chunks(1024 * 1024).map(|chunk| UploadRequest {
        part: Some(Part::Data(chunk.to_vec())),
    }));
    client
        .upload(tokio_stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn large_files_upload_and_download_intact() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let data = noise(50 * 1024 * 1024 + 123, 7);
    let hash = sha256(&data);

    let up = upload(&mut client, "big/upload.bin", &data, &hash).await?;
    let abs = daemon.workspace().join("big/upload.bin");
    assert_eq!(up.path, abs.display().to_string());
    assert_eq!(
        (up.size, up.sha256.as_str()),
        (data.len() as u64, hash.as_str())
    );
    assert_eq!(sha256(&std::fs::read(&abs)?), hash);

    let mut stream = client
        .download(DownloadRequest {
            path: "big/upload.bin".into(),
            chunk_size: 0,
        })
        .await?
        .into_inner();
    let mut received = Vec::new();
    let mut last = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        assert!(last.is_none(), "a chunk after the last one");
        assert!(chunk.data.len() <= 1024 * 1024);
        received.extend_from_slice(&chunk.data);
        if chunk.last {
            last = Some(chunk);
        }
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("no last chunk"))?;
    assert_eq!(
        (last.size, last.sha256.as_str()),
        (data.len() as u64, hash.as_str())
    );
    assert!(received == data, "downloaded bytes differ");
    Ok(())
}

#[tokio::test]
async fn a_bad_upload_leaves_no_file() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let data = noise(3 * 1024 * 1024, 1);
    let wrong = "0".repeat(64);
    let err = upload(&mut client, "up/bad.bin", &data, &wrong).await.err();
    let err = err.ok_or_else(|| anyhow::anyhow!("a mismatched upload succeeded"))?;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains(&wrong), "{err:?}");
    assert!(err.message().contains(&sha256(&data)), "{err:?}");
    let dir = daemon.workspace().join("up");
    let left: Vec<_> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    let data_first = vec![UploadRequest {
        part: Some(Part::Data(b"x".to_vec())),
    }];
    let err = client.upload(tokio_stream::iter(data_first)).await.err();
    assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));

    let err = client
        .download(DownloadRequest {
            path: "missing".into(),
            chunk_size: 0,
        })
        .await
        .err();
    assert_eq!(err.map(|e| e.code()), Some(Code::NotFound));
    let err = client
        .download(DownloadRequest {
            path: "up".into(),
            chunk_size: 0,
        })
        .await
        .err();
    assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));
    let err = client
        .download(DownloadRequest {
            path: "up".into(),
            chunk_size: 5 * 1024 * 1024,
        })
        .await
        .err();
    assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_upload_leaves_no_file() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let first = [
        UploadRequest {
            part: Some(Part::Header(UploadHeader {
                path: "half/file.bin".into(),
                ..UploadHeader::default()
            })),
        },
        UploadRequest {
            part: Some(Part::Data(noise(1024 * 1024, 3))),
        },
    ];
    // The client sends a header and some data, then goes away without finishing.
    let never_ends = tokio_stream::iter(first).chain(tokio_stream::pending());
    let dir = daemon.workspace().join("half");
    let call = client.upload(never_ends);
    let watch = async {
        while std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        reply = call => anyhow::bail!("an unfinished upload completed: {reply:?}"),
        () = watch => {}
    }
    // The call future is dropped here, which resets the stream; a temporary file nobody removes
    // stays forever.
    let left = || {
        std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    wait_none("the abandoned upload's temporary file to go", left).await;
    Ok(())
}

#[tokio::test]
async fn fifos_and_devices_are_refused_at_once() -> anyhow::Result<()> {
    let daemon = Daemon::start().await?;
    let mut client = daemon.client().await?;
    let fifo = daemon.workspace().join("notes.txt");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    anyhow::ensure!(made.success(), "mkfifo failed: {made}");
    // A read that blocked on the FIFO would never end: the guard turns that into a failure.
    let guard = HUNG;

    let err = tokio::time::timeout(guard, client.read_file(read("notes.txt")))
        .await
        .map_err(|_| anyhow::anyhow!("ReadFile hung on a FIFO"))?
        .err();
    let err = err.ok_or_else(|| anyhow::anyhow!("read a FIFO"))?;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        err.message(),
        format!(
            "{} is a FIFO (named pipe); only regular files can be read or written here (copy the \
             data into a file first)",
            fifo.display()
        )
    );

    let download = DownloadRequest {
        path: "notes.txt".into(),
        chunk_size: 0,
    };
    let err = tokio::time::timeout(guard, client.download(download))
        .await
        .map_err(|_| anyhow::anyhow!("Download hung on a FIFO"))?
        .err();
    let err = err.ok_or_else(|| anyhow::anyhow!("downloaded a FIFO"))?;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("is a FIFO"), "{err:?}");

    // Appending to a FIFO nobody reads neither blocks nor writes.
    let append = WriteFileRequest {
        append: true,
        ..write("notes.txt", b"x")
    };
    let err = tokio::time::timeout(guard, client.write_file(append))
        .await
        .map_err(|_| anyhow::anyhow!("WriteFile hung on a FIFO"))?
        .err();
    let err = err.ok_or_else(|| anyhow::anyhow!("appended to a FIFO"))?;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("is a FIFO"), "{err:?}");

    // Devices too (reading /dev/zero would never end), also through a symlink.
    std::os::unix::fs::symlink("/dev/zero", daemon.workspace().join("zero"))?;
    for path in ["/dev/zero", "zero"] {
        let err = tokio::time::timeout(guard, client.read_file(read(path)))
            .await
            .map_err(|_| anyhow::anyhow!("ReadFile of {path} hung"))?
            .err();
        let err = err.ok_or_else(|| anyhow::anyhow!("read {path}"))?;
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("is a character device"), "{err:?}");
    }

    // The daemon still serves.
    client.write_file(write("after.txt", b"ok")).await?;
    let got = client.read_file(read("after.txt")).await?.into_inner();
    assert_eq!(got.content, b"ok");
    Ok(())
}
