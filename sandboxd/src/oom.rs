//! The memory cgroup's OOM-kill counter, to tell an out-of-memory kill from any other SIGKILL.

/// Where the counter lives: cgroup v1, then v2.
const SOURCES: [&str; 2] = [
    "/sys/fs/cgroup/memory/memory.oom_control",
    "/sys/fs/cgroup/memory.events",
];

/// The number of OOM kills in this container's memory cgroup so far, or `None` when no cgroup
/// file says.
pub fn kill_count() -> Option<u64> {
    SOURCES
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| parse(&text))
}

fn parse(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_cgroup_formats_parse() {
        assert_eq!(
            parse("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            Some(3)
        );
        assert_eq!(
            parse("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n"),
            Some(2)
        );
        assert_eq!(parse("oom 1\n"), None);
    }
}
