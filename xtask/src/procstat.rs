//! CPU time of processes, from /proc/<pid>/stat (Linux, 100 ticks a second).

/// The numeric fields after the command name: [0] is the state, [1] the parent pid, [11..=14]
/// utime, stime, cutime and cstime in ticks.
fn fields(pid: &str) -> Option<Vec<i64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<i64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    (fields.len() > 14).then_some(fields)
}

fn ticks_to_seconds(ticks: i64) -> f64 {
    ticks as f64 / 100.0
}

/// utime + stime of one process, in seconds (0 if it is gone).
pub fn cpu_seconds(pid: &str) -> f64 {
    fields(pid).map_or(0.0, |f| ticks_to_seconds(f[11] + f[12]))
}

/// The parent of a process: for a backend, its postmaster.
pub fn parent_pid(pid: u32) -> Option<u32> {
    fields(&pid.to_string()).and_then(|f| u32::try_from(f[1]).ok())
}

/// The /proc stat fields of each live child of `parent`.
fn children(parent: u32) -> Vec<Vec<i64>> {
    let parent = i64::from(parent);
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| fields(&pid))
        .filter(|f| f[1] == parent)
        .collect()
}

/// CPU seconds a PostgreSQL cluster has used so far: the postmaster, its live children, and,
/// through the postmaster's cutime and cstime, every child it has reaped (the backends of
/// clients that have disconnected).
pub fn cluster_cpu_seconds(postmaster: u32) -> f64 {
    let own = fields(&postmaster.to_string()).map_or(0, |f| f[11] + f[12] + f[13] + f[14]);
    let children: i64 = children(postmaster).iter().map(|f| f[11] + f[12]).sum();
    ticks_to_seconds(own + children)
}

/// Wait (at most `limit`) until the postmaster has no more children than `count`: the
/// backends of clients that just disconnected count towards its cutime only once it has
/// reaped them.
pub fn wait_for_children(postmaster: u32, count: usize, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while children(postmaster).len() > count && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// How many children the postmaster has now.
pub fn child_count(postmaster: u32) -> usize {
    children(postmaster).len()
}
