//! The one socket setting sqlx leaves out: `TCP_NODELAY` on the connections to the server.

/// Turn on `TCP_NODELAY` for this process's connections to the server at `server_port`.
///
/// sqlx 0.9 never sets it, and its COPY writes every `CopyData` and the closing `CopyDone` as
/// separate flushes: with Nagle's algorithm each flush after the first waits for the server's
/// delayed ACK (~40 ms), so every table cost at least 40 ms more than its data (measured: the
/// demo fixture's 89 tables took 7.7 s over TCP, 0.7 s with this). sqlx exposes no socket, so
/// every TCP socket of this process whose peer port is the server's gets the option: that also
/// covers a proxy in between (its port is the one we connected to), and it is harmless on any
/// other connection to such a port. Unix sockets have no peer port and are left alone.
pub fn disable_nagle(server_port: u16) {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<libc::c_int>().ok()) else { continue };
        if peer_port(fd) != Some(server_port) {
            continue;
        }
        let on: libc::c_int = 1;
        // SAFETY: setsockopt only reads the int we pass; on a descriptor that closed or is no
        // TCP socket it fails, which changes nothing.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// The remote port of `fd` when it is a connected IPv4/IPv6 socket.
fn peer_port(fd: libc::c_int) -> Option<u16> {
    // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at most `len` bytes into
    // it and fails on descriptors that are not connected sockets.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if unsafe { libc::getpeername(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) } != 0 {
        return None;
    }
    match addr.ss_family as libc::c_int {
        // SAFETY: the family says which sockaddr the storage holds.
        libc::AF_INET => Some(u16::from_be(unsafe { (*(&addr as *const _ as *const libc::sockaddr_in)).sin_port })),
        libc::AF_INET6 => Some(u16::from_be(unsafe { (*(&addr as *const _ as *const libc::sockaddr_in6)).sin6_port })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nagle_goes_off_on_connections_to_the_server_port_only() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_server = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let to_other = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_server.nodelay().unwrap() && !to_other.nodelay().unwrap());
        disable_nagle(server.local_addr().unwrap().port());
        assert!(to_server.nodelay().unwrap(), "the connection to the server port");
        assert!(!to_other.nodelay().unwrap(), "a connection to another port is left alone");
    }
}
