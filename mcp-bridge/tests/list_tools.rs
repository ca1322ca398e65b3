//! `mcp-bridge --list-tools` against the golden file `tests/golden/tools.json`: tool names,
//! argument names and types, what is required, descriptions and annotations are what every MCP
//! client (and every model's context) sees, so any change to them must be deliberate.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const REFRESH: &str = "UPDATE_GOLDEN=1 cargo test -p mcp-bridge --test list_tools";

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tools.json")
}

/// What `mcp-bridge --list-tools` prints, parsed.
fn listed() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .arg("--list-tools")
        .env_remove("AGENT_RUNTIME_TOKEN")
        .output()
        .expect("mcp-bridge runs");
    assert!(
        out.status.success(),
        "mcp-bridge --list-tools failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--list-tools prints JSON")
}

/// The tools of a `tools/list` result by name.
fn by_name(v: &Value) -> Vec<(String, Value)> {
    v["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| (t["name"].as_str().unwrap_or("?").to_owned(), t.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Which tools were added, removed or changed, one line each.
fn differences(golden: &Value, now: &Value) -> Vec<String> {
    let (old, new) = (by_name(golden), by_name(now));
    let find = |list: &[(String, Value)], name: &str| {
        list.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone())
    };
    let mut lines = Vec::new();
    for (name, tool) in &new {
        match find(&old, name) {
            None => lines.push(format!("added: {name}")),
            Some(t) if t != *tool => {
                lines.push(format!("changed: {name}\n  was: {t}\n  now: {tool}"))
            }
            Some(_) => {}
        }
    }
    for (name, _) in &old {
        if find(&new, name).is_none() {
            lines.push(format!("removed: {name}"));
        }
    }
    lines
}

#[test]
fn list_tools_matches_the_golden_file() {
    let now = listed();
    let pretty = serde_json::to_string_pretty(&now).expect("JSON") + "\n";
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).expect("golden file written");
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\nwrite it with: {REFRESH}",
            path.display()
        )
    });
    let golden: Value = serde_json::from_str(&text).expect("the golden file is JSON");
    let diff = differences(&golden, &now);
    assert!(
        golden == now,
        "`mcp-bridge --list-tools` no longer matches {}:\n{}\n\nEvery MCP client sees these \
         names, arguments and descriptions. If the change is intended, refresh the file with\n  \
         {REFRESH}\nand commit it with the change.",
        path.display(),
        if diff.is_empty() {
            "(the tools are the same; something around them changed)".to_owned()
        } else {
            diff.join("\n")
        },
    );
}

/// `tools/list` goes into every model's context before its first call: all tools, as
/// `--list-tools` prints them, fit in 10,000 characters (issue 14).
#[test]
fn list_tools_fits_the_budget() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .arg("--list-tools")
        .env_remove("AGENT_RUNTIME_TOKEN")
        .output()
        .expect("mcp-bridge runs");
    let chars = String::from_utf8_lossy(&out.stdout).chars().count();
    assert!(
        chars <= 10_000,
        "tools/list is {chars} characters, over the 10,000 budget: shorten descriptions"
    );
}
