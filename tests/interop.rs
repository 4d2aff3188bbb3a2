//! Interoperability with an independent AMF implementation, and the `serve` binary as users run
//! it: a py3amf client (Python, installed into target/py3amf-venv by scripts/py3amf-venv.sh) talks
//! to `amf-bench serve`, which then shuts down on SIGTERM and prints its counters.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `serve` process on 127.0.0.1 port 0, and the port it reported.
struct ServeProcess {
    child: Child,
    port: u16,
    stdout: BufReader<std::process::ChildStdout>,
}

impl ServeProcess {
    fn start(extra: &[&str]) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_amf-bench"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts amf-bench serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reads the listening line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("a listening line, got {line:?}"));
        ServeProcess {
            child,
            port,
            stdout,
        }
    }

    /// Sends SIGTERM and returns the exit status and the rest of standard output.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("runs kill");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                break status;
            }
            assert!(Instant::now() < deadline, "serve exits after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("reads stdout");
        (status, rest)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn py3amf_python() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/py3amf-venv.sh");
    let output = Command::new(script)
        .output()
        .expect("runs scripts/py3amf-venv.sh");
    assert!(
        output.status.success(),
        "scripts/py3amf-venv.sh failed (it needs python3 with venv and access to PyPI): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("a path")
        .trim()
        .to_string()
}

#[test]
fn a_py3amf_client_interoperates_with_serve() {
    let python = py3amf_python();
    let server = ServeProcess::start(&[]);
    let client = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/py3amf_client.py"
        ))
        .arg(server.port.to_string())
        .output()
        .expect("runs the py3amf client");
    assert!(
        client.status.success(),
        "py3amf client failed:\n{}{}",
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr)
    );
    let said = String::from_utf8_lossy(&client.stdout);
    assert!(said.contains("all checks passed"), "{said}");
    let (status, counters) = server.terminate();
    assert!(status.success(), "serve exits 0 on SIGTERM: {status:?}");
    assert!(counters.contains("policy requests: 1"), "{counters}");
    assert!(counters.contains("echo 1"), "{counters}");
    assert!(counters.contains("amf_socket_ping 1"), "{counters}");
}
