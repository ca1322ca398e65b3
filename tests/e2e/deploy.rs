//! deploy/docker-compose.yml: the host in a container, driving the machine's Docker.

use std::process::Command;
use std::time::Duration;

use agent_runtime_e2e::{binary, ensure_image, instance_containers, unique_instance};
use serde_json::{json, Value};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Compose {
    project: String,
    env: Vec<(&'static str, String)>,
}

impl Compose {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/docker-compose.yml");
        Command::new("docker-compose")
            .args(["-f", file, "-p", &self.project])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("docker-compose is needed: apt-get install docker-compose (bash .ci/setup installs it)")
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
        // The host in the container leaves its sandboxes for a successor; after a failed test
        // there is none, so remove them here.
        if let Some((_, instance)) = self
            .env
            .iter()
            .find(|(k, _)| *k == "AGENT_RUNTIME_INSTANCE")
        {
            for c in instance_containers(instance) {
                let _ = agent_runtime_e2e::docker(&["rm", "-f", &c]);
            }
        }
    }
}

#[tokio::test]
async fn compose_serves_rest_and_grpc_from_a_container() {
    ensure_image();
    let out = Command::new(binary("agent-runtime"))
        .args(["image", "build", "--host"])
        .output()
        .expect("build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let instance = unique_instance();
    let (rest, grpc) = (free_port(), free_port());
    let compose = Compose {
        project: instance.clone(),
        env: vec![
            ("AGENT_RUNTIME_INSTANCE", instance.clone()),
            ("AGENT_RUNTIME_REST_PORT", rest.to_string()),
            ("AGENT_RUNTIME_GRPC_PORT", grpc.to_string()),
            // No warm sandbox: the test counts the instance's containers.
            ("AGENT_RUNTIME_WARM_CONTEXTS", "0".to_owned()),
        ],
    };
    let up = compose.run(&["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{rest}");
    let mut health = String::new();
    // Polled until it answers; the bound only stops a hung test.
    for _ in 0..240 {
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            health = r.text().await.unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        health,
        "OK",
        "/health never answered OK (hung?); logs: {}",
        String::from_utf8_lossy(&compose.run(&["logs"]).stdout)
    );

    let created: Value = http
        .post(format!("{base}/api/v1/contexts"))
        .json(&json!({}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let ctx = created["context_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let ran: Value = http
        .post(format!("{base}/api/v1/contexts/{ctx}/execute"))
        .json(&json!({"code": "print(6 * 7)"}))
        .send()
        .await
        .expect("execute")
        .json()
        .await
        .expect("json");
    assert_eq!(ran["output"]["stdout"], "42\n", "{ran}");
    assert_eq!(instance_containers(&instance).len(), 1);
    http.delete(format!("{base}/api/v1/contexts/{ctx}"))
        .send()
        .await
        .expect("delete");
    assert!(instance_containers(&instance).is_empty());
}
