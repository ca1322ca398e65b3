//! Files through the host: whole-file calls, streaming transfers checked by SHA-256, errors.

use agent_runtime_e2e::{with_id, Host};
use agent_runtime_proto::v1::upload_request::Part;
use agent_runtime_proto::v1::{
    DownloadRequest, ListDirRequest, MakeDirRequest, ReadFileRequest, RemoveRequest, StatRequest,
    UploadHeader, UploadRequest, WriteFileRequest,
};
use sha2::{Digest, Sha256};
use tonic::Code;

/// Deterministic pseudo-random bytes (xorshift), so no fixture is needed.
fn block(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn streams_200_mib_each_way_checked_by_sha256() {
    const MIB: usize = 1 << 20;
    const TOTAL_MIB: usize = 200;
    let host = Host::start(&[]);
    let id = host.create().await;
    let mut client = host.sandbox().await;

    // Upload: generated chunk by chunk, never held whole.
    let chunk = block(42, MIB);
    let mut expected = Sha256::new();
    for _ in 0..TOTAL_MIB {
        expected.update(&chunk);
    }
    let expected = hex::encode(expected.finalize());
    let header = UploadRequest {
        part: Some(Part::Header(UploadHeader {
            path: "big/blob.bin".into(),
            mode: 0,
            sha256: expected.clone(),
        })),
    };
    let data = (0..TOTAL_MIB).map(move |_| UploadRequest {
        part: Some(Part::Data(chunk.clone())),
    });
    let stream = tokio_stream::iter(std::iter::once(header).chain(data));
    let resp = client
        .upload(with_id(&id, stream))
        .await
        .expect("upload")
        .into_inner();
    assert_eq!(resp.size, (TOTAL_MIB * MIB) as u64);
    assert_eq!(resp.sha256, expected);
    assert_eq!(resp.path, "/workspace/big/blob.bin");

    // The sandbox itself agrees on the content.
    let out = host.sh(&id, "sha256sum /workspace/big/blob.bin").await;
    assert!(out.stdout.starts_with(&expected), "{}", out.stdout);

    // Download, hashing as it arrives.
    let mut stream = client
        .download(with_id(
            &id,
            DownloadRequest {
                path: "big/blob.bin".into(),
                chunk_size: 0,
            },
        ))
        .await
        .expect("download")
        .into_inner();
    let mut got = Sha256::new();
    let mut size = 0u64;
    let mut last = None;
    while let Some(c) = stream.message().await.expect("chunk") {
        got.update(&c.data);
        size += c.data.len() as u64;
        if c.last {
            last = Some(c);
        }
    }
    let last = last.expect("a final chunk");
    assert_eq!(size, (TOTAL_MIB * MIB) as u64);
    assert_eq!(hex::encode(got.finalize()), expected);
    assert_eq!((last.size, last.sha256.as_str()), (size, expected.as_str()));

    // A wrong expected hash fails the upload and leaves no file behind.
    let header = UploadRequest {
        part: Some(Part::Header(UploadHeader {
            path: "bad.bin".into(),
            mode: 0,
            sha256: "00".repeat(32),
        })),
    };
    let data = UploadRequest {
        part: Some(Part::Data(b"hello".to_vec())),
    };
    let err = client
        .upload(with_id(&id, tokio_stream::iter([header, data])))
        .await
        .expect_err("hash mismatch");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = client
        .stat(with_id(
            &id,
            StatRequest {
                path: "bad.bin".into(),
            },
        ))
        .await
        .expect_err("no file");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn whole_file_calls_and_their_errors() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let mut c = host.sandbox().await;

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let w = c
        .write_file(with_id(
            &id,
            WriteFileRequest {
                path: "a/b/c.bin".into(),
                content: binary.clone(),
                mode: 0,
                append: false,
            },
        ))
        .await
        .expect("write")
        .into_inner();
    assert_eq!((w.path.as_str(), w.size), ("/workspace/a/b/c.bin", 70_000));
    assert_eq!(w.sha256, hex::encode(Sha256::digest(&binary)));
    let r = c
        .read_file(with_id(
            &id,
            ReadFileRequest {
                path: "/workspace/a/b/c.bin".into(),
                max_bytes: 0,
            },
        ))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(r.content, binary);
    assert!(!r.is_text);

    c.write_file(with_id(
        &id,
        WriteFileRequest {
            path: "notes.txt".into(),
            content: "héllo\n".into(),
            mode: 0,
            append: false,
        },
    ))
    .await
    .expect("write text");
    let r = c
        .read_file(with_id(
            &id,
            ReadFileRequest {
                path: "notes.txt".into(),
                max_bytes: 0,
            },
        ))
        .await
        .expect("read")
        .into_inner();
    assert!(r.is_text);
    assert_eq!(String::from_utf8(r.content).expect("utf8"), "héllo\n");

    c.make_dir(with_id(
        &id,
        MakeDirRequest {
            path: "d1/d2".into(),
        },
    ))
    .await
    .expect("mkdir");
    let list = c
        .list_dir(with_id(
            &id,
            ListDirRequest {
                path: String::new(),
                include_hidden: false,
            },
        ))
        .await
        .expect("ls")
        .into_inner();
    let names: Vec<(String, String)> = list
        .entries
        .iter()
        .map(|e| (e.name.clone(), e.r#type.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("a".to_owned(), "directory".to_owned()),
            ("d1".to_owned(), "directory".to_owned()),
            ("notes.txt".to_owned(), "file".to_owned())
        ]
    );

    let err = c
        .read_file(with_id(
            &id,
            ReadFileRequest {
                path: "missing.txt".into(),
                max_bytes: 0,
            },
        ))
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("/workspace/missing.txt"),
        "{}",
        err.message()
    );
    let err = c
        .write_file(with_id(
            &id,
            WriteFileRequest {
                path: "/etc/evil".into(),
                content: b"x".to_vec(),
                mode: 0,
                append: false,
            },
        ))
        .await
        .expect_err("read-only root");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = c
        .remove(with_id(
            &id,
            RemoveRequest {
                path: "a".into(),
                recursive: false,
            },
        ))
        .await
        .expect_err("non-empty dir");
    assert_ne!(err.code(), Code::Ok);
    c.remove(with_id(
        &id,
        RemoveRequest {
            path: "a".into(),
            recursive: true,
        },
    ))
    .await
    .expect("rm -r");
    let err = c
        .stat(with_id(&id, StatRequest { path: "a".into() }))
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
}
