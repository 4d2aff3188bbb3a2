//! The `amf-bench` binary as a child process: started, signalled and waited for, every wait
//! bounded, and killed on drop so a failing test leaves nothing running.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn amf_bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_amf-bench"))
}

/// Sends the signal `name` (e.g. `-TERM`) to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([name, &pid.to_string()])
        .status()
        .expect("runs kill");
    assert!(status.success(), "kill {name} {pid}");
}

/// Waits for `child` to exit, failing the test (after killing it) past `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("waits") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `amf-bench ARGS` to completion within 20 s (killing it after), so a server that starts
/// when it should have refused fails the test instead of hanging it.
pub fn run_bounded(args: &[&str]) -> Output {
    let mut command = amf_bench();
    command.args(args);
    run_bounded_command(command)
}

/// `run_bounded` for any command, e.g. the binary started by a shell that set a limit first.
pub fn run_bounded_command(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("waits").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collects output")
}

/// A server process that printed `listening on ADDR` first.
pub struct Listening {
    pub child: Child,
    /// The address from the first line, e.g. `127.0.0.1:40123`.
    pub addr: String,
    /// None once closed by `close_stdout`.
    stdout: Option<BufReader<ChildStdout>>,
}

impl Listening {
    /// Starts `amf-bench ARGS` and reads its listening line.
    pub fn start(args: &[&str]) -> Listening {
        Listening::start_with_stderr(args, Stdio::null())
    }

    /// `start`, with standard error going to `stderr` (`Stdio::piped()` leaves it in `child`).
    pub fn start_with_stderr(args: &[&str], stderr: Stdio) -> Listening {
        let mut child = amf_bench()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starts amf-bench");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reads the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("a listening line, got {line:?}"))
            .to_string();
        Listening {
            child,
            addr,
            stdout: Some(stdout),
        }
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("a port in {:?}", self.addr))
    }

    /// Sends the signal `name` (e.g. `-HUP`).
    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Sends SIGTERM, waits for the exit, and returns the status and the rest of standard output.
    pub fn terminate(&mut self) -> (ExitStatus, String) {
        self.stop_with("-TERM")
    }

    /// Sends the signal `name`, waits for the exit, and returns the status and the rest of
    /// standard output.
    pub fn stop_with(&mut self, name: &str) -> (ExitStatus, String) {
        self.signal(name);
        let status = wait_exit(&mut self.child, Duration::from_secs(20));
        let mut rest = String::new();
        if let Some(stdout) = &mut self.stdout {
            stdout.read_to_string(&mut rest).expect("reads stdout");
        }
        (status, rest)
    }

    /// Closes our end of its standard output, as `| head -1` does after the first line.
    pub fn close_stdout(&mut self) {
        self.stdout = None;
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (and reaped) when dropped, so that a test that fails while the child
/// is blocked (reading a pipe no one will write) leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
