//! `migrate-to-postgres` tries to reach outside the sandbox through WASI — files, directories,
//! sockets, name lookup, environment, arguments, stdin — and fails naming every attempt that
//! *succeeded*, so a test can assert that none did:
//! `wasi-escape: nothing succeeded (tried N ways out)`.

include!("../../shell.rs");

use std::io::Read;

fn hostile(_source: &Handle, _target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    let mut escaped: Vec<String> = Vec::new();
    let mut tried = 0usize;
    let mut attempt = |what: &str, result: Result<String, String>| {
        tried += 1;
        match result {
            Ok(detail) => escaped.push(format!("{what} ({detail})")),
            Err(e) => events::log(Level::Debug, &format!("wasi-escape: {what}: refused ({e})")),
        }
    };
    attempt(
        "read /etc/passwd",
        std::fs::read("/etc/passwd").map(|b| format!("{} bytes", b.len())).map_err(|e| e.to_string()),
    );
    attempt(
        "read /proc/self/environ",
        std::fs::read("/proc/self/environ").map(|b| format!("{} bytes", b.len())).map_err(|e| e.to_string()),
    );
    attempt("list /", std::fs::read_dir("/").map(|d| format!("{} entries", d.count())).map_err(|e| e.to_string()));
    attempt("list .", std::fs::read_dir(".").map(|d| format!("{} entries", d.count())).map_err(|e| e.to_string()));
    attempt(
        "write /tmp/blocklet-migrate-wasi-escape",
        std::fs::write("/tmp/blocklet-migrate-wasi-escape", b"escaped\n")
            .map(|()| "written".into())
            .map_err(|e| e.to_string()),
    );
    attempt(
        "create ./blocklet-migrate-wasi-escape",
        std::fs::File::create("blocklet-migrate-wasi-escape").map(|_| "created".into()).map_err(|e| e.to_string()),
    );
    attempt(
        "open a TCP connection to 127.0.0.1:5432",
        std::net::TcpStream::connect("127.0.0.1:5432")
            .map(|s| format!("{:?}", s.peer_addr()))
            .map_err(|e| e.to_string()),
    );
    attempt(
        "listen on TCP 0.0.0.0:0",
        std::net::TcpListener::bind("0.0.0.0:0").map(|l| format!("{:?}", l.local_addr())).map_err(|e| e.to_string()),
    );
    attempt(
        "bind a UDP socket",
        std::net::UdpSocket::bind("0.0.0.0:0").map(|s| format!("{:?}", s.local_addr())).map_err(|e| e.to_string()),
    );
    attempt(
        "resolve localhost",
        std::net::ToSocketAddrs::to_socket_addrs("localhost:5432")
            .map(|a| format!("{} addresses", a.count()))
            .map_err(|e| e.to_string()),
    );
    let vars: Vec<String> = std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
    attempt("read environment variables", if vars.is_empty() { Err("none".into()) } else { Ok(vars.join(", ")) });
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    attempt("read arguments", if args.is_empty() { Err("none".into()) } else { Ok(args.join(" ")) });
    let mut buf = [0u8; 64];
    attempt(
        "read stdin",
        match std::io::stdin().read(&mut buf) {
            Ok(0) => Err("end of input".into()),
            Ok(n) => Ok(format!("{n} bytes")),
            Err(e) => Err(e.to_string()),
        },
    );
    if escaped.is_empty() {
        Err(failure(format!("wasi-escape: nothing succeeded (tried {tried} ways out)")))
    } else {
        Err(failure(format!("wasi-escape: SUCCEEDED: {}", escaped.join("; "))))
    }
}
