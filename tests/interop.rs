//! Interoperability with an independent AMF implementation, and the `serve` binary as users run
//! it: a py3amf client (Python, installed into target/py3amf-venv by scripts/py3amf-venv.sh) talks
//! to `amf-bench serve`, which then shuts down on SIGTERM and prints its counters.

mod common;

use std::process::Command;

use common::process::Listening;

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
    let mut server = Listening::start(&["serve", "--listen", "127.0.0.1:0"]);
    let client = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/py3amf_client.py"
        ))
        .arg(server.port().to_string())
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
