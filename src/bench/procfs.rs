//! The relay's memory, read from /proc when it runs on this machine.

use std::fs;

/// Resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The process listening on the port of `addr` (`HOST:PORT`), if it can be
/// seen: the listening socket's inode from /proc/net/tcp{,6}, then the
/// process holding that inode.
pub fn pid_listening_on(addr: &str) -> Option<u32> {
    let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let table = fs::read_to_string(table).ok()?;
            table.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port =
                    u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
                // State 0A is LISTEN.
                (local_port == port && *fields.get(3)? == "0A")
                    .then(|| fields.get(9).map(|s| s.to_string()))?
            })
        })?;
    let wanted = format!("socket:[{inode}]");
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let fds = fs::read_dir(entry.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|link| link.to_str() == Some(&wanted)))
            .then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_by_its_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert_eq!(pid_listening_on(&addr), Some(std::process::id()));
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}
