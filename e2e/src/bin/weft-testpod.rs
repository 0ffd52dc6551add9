//! The program behind the built-in test image `weft.test/testpod`, run by the process-kubelet.
//!
//! ```text
//! weft-testpod [sleep]      run until SIGTERM
//! weft-testpod http         serve HTTP on $POD_IP:$PORT (default 8080) until SIGTERM:
//!                             /healthz → 200; /readyz → 200 if $READY_FILE is unset or exists, else 503;
//!                             / → "<pod name> <pod ip>"
//! weft-testpod exit [CODE]  exit with CODE (default 0) after $EXIT_DELAY_MS (default 0)
//! ```
//!
//! On SIGTERM every mode appends `SIGTERM <pid>` to `$SIGNAL_FILE` (if set) and to stdout, then exits 0
//! after `$TERM_DELAY_MS` (default 0) — or keeps running if `$IGNORE_SIGTERM=1` (to test SIGKILL after the
//! grace period).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

fn env_ms(name: &str) -> Duration {
    Duration::from_millis(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn main() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("sleep");
    match mode {
        "sleep" => {}
        "http" => serve_http(),
        "exit" => {
            std::thread::sleep(env_ms("EXIT_DELAY_MS"));
            let code = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            println!("exiting with {code}");
            std::process::exit(code);
        }
        "--help" | "-h" | "help" => {
            println!(
                "usage: weft-testpod [sleep | http | exit [CODE]] (see the source for environment variables)"
            );
            return;
        }
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
    println!("started pid {} mode {mode}", std::process::id());
    let _ = std::io::stdout().flush();
    wait_for_sigterm();
}

fn wait_for_sigterm() -> ! {
    let ignore = std::env::var("IGNORE_SIGTERM").is_ok_and(|v| v == "1");
    loop {
        if TERM.swap(false, Ordering::SeqCst) {
            let line = format!("SIGTERM {}\n", std::process::id());
            print!("{line}");
            let _ = std::io::stdout().flush();
            if let Ok(path) = std::env::var("SIGNAL_FILE") {
                let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
                if let Ok(mut file) = file {
                    let _ = file.write_all(line.as_bytes());
                }
            }
            if !ignore {
                std::thread::sleep(env_ms("TERM_DELAY_MS"));
                std::process::exit(0);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn serve_http() {
    let ip = std::env::var("POD_IP").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = match TcpListener::bind(format!("{ip}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind {ip}:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {ip}:{port}");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
}

fn answer(mut stream: std::net::TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (code, body) = match path {
        "/healthz" => (200, "ok".to_string()),
        "/readyz" => match std::env::var("READY_FILE") {
            Ok(file) if !std::path::Path::new(&file).exists() => (503, "not ready".to_string()),
            _ => (200, "ready".to_string()),
        },
        _ => (
            200,
            format!(
                "{} {}",
                std::env::var("POD_NAME").unwrap_or_default(),
                std::env::var("POD_IP").unwrap_or_default()
            ),
        ),
    };
    let reason = if code == 200 { "OK" } else { "Service Unavailable" };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}
