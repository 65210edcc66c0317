//! `nsgd run` end to end: a client and a server in their own network
//! namespaces, joined only through a third namespace where nsgd bridges two
//! veth ports (no kernel forwarding there), with real programs on both ends
//! (curl, python3's http.server, ping, UDP sockets).
//!
//! Needs root (network namespaces, AF_PACKET) and iproute2, ethtool, curl,
//! ping and python3; each test skips with a message where they are missing.
//! Every lab has its own uniquely named namespaces, removed on drop — also
//! when a test fails. Tests run one at a time: they measure behaviour under
//! load and must not share two cores with each other.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

const CLIENT_IP: &str = "10.20.1.10";
const SERVER_IP: &str = "10.20.2.20";

fn nsgd() -> &'static str {
    env!("CARGO_BIN_EXE_nsgd")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why this machine cannot run the lab, if it cannot; `more` names the
/// programs a test needs beyond the lab's own.
fn missing_prerequisite(more: &[&str]) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces and AF_PACKET need it)".into());
    }
    let lab = ["ip", "ethtool", "curl", "ping", "python3"];
    lab.iter()
        .chain(more)
        .find(|program| !have(program))
        .map(|program| format!("{program} is not installed"))
}

/// The lab lock, or a skip with its reason where the lab cannot run; the
/// arguments name more programs the test needs.
macro_rules! serial_or_skip {
    ($($program:expr),*) => {{
        let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = missing_prerequisite(&[$($program),*]) {
            eprintln!("skipping live lab test: {why}");
            return;
        }
        guard
    }};
}

/// The lock and a fresh lab, or a skip.
macro_rules! lab_or_skip {
    ($($program:expr),*) => {{
        let guard = serial_or_skip!($($program),*);
        (guard, Lab::new())
    }};
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three namespaces: client (c0) — nva (n0, n1) — server (s0).
struct Lab {
    prefix: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    /// A uniquely named lab with its folder, before any namespace exists.
    fn named() -> Lab {
        let prefix = format!(
            "nsgdt{}x{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).unwrap();
        Lab {
            prefix,
            dir,
            children: Vec::new(),
        }
    }

    fn new() -> Lab {
        let lab = Lab::named();
        for ns in ["client", "nva", "server"] {
            must(&["ip", "netns", "add", &lab.ns(ns)]);
            must(&["ip", "-n", &lab.ns(ns), "link", "set", "lo", "up"]);
        }
        let (client, nva, server) = (lab.ns("client"), lab.ns("nva"), lab.ns("server"));
        must(&[
            "ip", "link", "add", "c0", "netns", &client, "type", "veth", "peer", "name", "n0",
            "netns", &nva,
        ]);
        must(&[
            "ip", "link", "add", "s0", "netns", &server, "type", "veth", "peer", "name", "n1",
            "netns", &nva,
        ]);
        for (ns, interface) in [(&client, "c0"), (&nva, "n0"), (&nva, "n1"), (&server, "s0")] {
            // Checksums filled in by the sender and no GRO aggregates: frames
            // cross the bridge byte for byte (see the README).
            let _ = run(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", interface, "tso", "off", "gso", "off",
                "gro", "off", "tx", "off", "rx", "off",
            ]);
            must(&["ip", "-n", ns, "link", "set", interface, "up"]);
        }
        must(&[
            "ip",
            "-n",
            &client,
            "addr",
            "add",
            "10.20.1.10/16",
            "dev",
            "c0",
        ]);
        must(&[
            "ip",
            "-n",
            &server,
            "addr",
            "add",
            "10.20.2.20/16",
            "dev",
            "s0",
        ]);
        lab
    }

    /// A lab built by `scripts/lab.sh up MODE` (same names, same
    /// topology), so the script is tested too.
    fn from_script(mode: &str) -> Lab {
        Lab::from_script_with(mode, &[])
    }

    /// The same, with more of the script's knobs (`("VETH_NAPI", "1")`).
    fn from_script_with(mode: &str, knobs: &[(&str, &str)]) -> Lab {
        let lab = Lab::named();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["up", mode])
            .env("LAB", &lab.prefix)
            // Whatever the script leaves in a temporary folder goes with the lab's.
            .env("TMPDIR", &lab.dir)
            .envs(knobs.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab.sh up {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A command run inside a namespace.
    fn exec(&self, role: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(role)]).args(args);
        command
    }

    fn spawn(&mut self, role: &str, args: &[&str]) -> usize {
        let child = self
            .exec(role, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    /// Starts an HTTP server in the server namespace serving `self.dir`.
    fn http_server(&mut self, port: u16) {
        let dir = self.dir.display().to_string();
        self.spawn(
            "server",
            &[
                "python3",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                SERVER_IP,
                "--directory",
                &dir,
            ],
        );
        self.wait_for_listener(port);
    }

    fn wait_for_listener(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = self
                .exec("server", &["ss", "-ltnH", &format!("sport = :{port}")])
                .output()
                .unwrap();
            if !out.stdout.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server on port {port} did not start");
    }

    /// Starts `nsgd run` in the middle namespace and waits until it forwards.
    fn start_nsgd(&mut self, policy: &Path, extra: &[&str]) -> Nsgd {
        self.start_nsgd_as(&[], policy, extra)
    }

    /// As `start_nsgd`, with `wrapper` (e.g. `setpriv …`) before nsgd.
    fn start_nsgd_as(&mut self, wrapper: &[&str], policy: &Path, extra: &[&str]) -> Nsgd {
        self.start_nsgd_between(wrapper, ["n0", "n1"], policy, extra)
    }

    /// Starts nsgd bridging the middle's `ports` and waits until it forwards.
    fn start_nsgd_between(
        &mut self,
        wrapper: &[&str],
        ports: [&str; 2],
        policy: &Path,
        extra: &[&str],
    ) -> Nsgd {
        let stdout = std::fs::File::create(self.path("nsgd.out")).unwrap();
        let stderr = std::fs::File::create(self.path("nsgd.err")).unwrap();
        let policy = policy.display().to_string();
        let mut args = wrapper.to_vec();
        args.extend_from_slice(&[
            nsgd(),
            "run",
            &policy,
            "--port",
            ports[0],
            "--port",
            ports[1],
            "--json",
        ]);
        args.extend_from_slice(extra);
        let child = self
            .exec("nva", &args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let nsgd = Nsgd {
            child,
            stdout: self.path("nsgd.out"),
            stderr: self.path("nsgd.err"),
        };
        nsgd.wait_for_log(
            &format!("forwarding between {} and {}", ports[0], ports[1]),
            1,
        );
        nsgd
    }

    fn curl(&self, port: u16, file: &str, extra: &[&str]) -> Output {
        let url = format!("http://{SERVER_IP}:{port}/{file}");
        let out = self.path(&format!("got-{port}-{file}"));
        let out = out.display().to_string();
        let mut args = vec!["curl", "-sS", "--max-time", "30", "-o", &out];
        args.extend_from_slice(extra);
        args.push(&url);
        self.exec("client", &args).output().unwrap()
    }
}

impl Lab {
    /// Downloads `file` from the server's port 8080 and checks it arrived
    /// byte for byte; `when` says which case failed.
    fn expect_curl_intact(&self, file: &str, data: &[u8], when: &str) {
        let got = self.curl(8080, file, &[]);
        assert!(
            got.status.success(),
            "{when}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        let received = std::fs::read(self.path(&format!("got-8080-{file}"))).unwrap();
        assert!(received == data, "{when}: the file changed on the way");
    }

    /// Starts a rate-limited download in the client namespace, written to
    /// `copy-FILE` in the lab folder; the caller waits on the child.
    fn start_download(&self, file: &str, rate: &str, max_time: &str) -> Child {
        let url = format!("http://{SERVER_IP}:8080/{file}");
        let out = self.path(&format!("copy-{file}")).display().to_string();
        self.exec(
            "client",
            &[
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                max_time,
                "--limit-rate",
                rate,
                "-o",
                &out,
                "-w",
                "%{http_code} %{size_download} %{time_total}",
                &url,
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    }

    /// Waits for a download from `start_download` and checks it arrived
    /// whole and byte for byte.
    fn expect_download_intact(&self, transfer: Child, file: &str, data: &[u8], when: &str) {
        let finished = transfer.wait_with_output().unwrap();
        assert!(
            finished.status.success(),
            "the transfer broke {when}: {}",
            String::from_utf8_lossy(&finished.stderr)
        );
        let copy = std::fs::read(self.path(&format!("copy-{file}"))).unwrap();
        assert!(copy == data, "the file changed {when}");
    }

    /// Whether `count` pings from `role` to `address` are all answered.
    fn ping(&self, role: &str, address: &str, count: u32) -> bool {
        let count = count.to_string();
        self.exec(
            role,
            &["ping", "-c", &count, "-i", "0.2", "-W", "1", address],
        )
        .output()
        .unwrap()
        .status
        .success()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in ["client", "nva", "server"] {
            // Deleting a namespace kills nothing, but its processes were
            // ours and are gone; this removes the veths with it.
            let _ = run(&["ip", "netns", "del", &self.ns(ns)]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `nsgd run`.
struct Nsgd {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Nsgd {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `needle` appears `times` times in the standard error.
    fn wait_for_log(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.log().matches(needle).count() >= times {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nsgd never said {needle:?}; its log:\n{}", self.log());
    }

    fn signal(&self, signal: &str) {
        must(&["kill", &format!("-{signal}"), &self.child.id().to_string()]);
    }

    /// Stops nsgd with SIGTERM and returns its final JSON report.
    fn stop(mut self) -> serde_json::Value {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "nsgd failed: {}", self.log());
                break;
            }
            assert!(Instant::now() < deadline, "nsgd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut text = String::new();
        std::fs::File::open(&self.stdout)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON ({e}): {text}"))
    }
}

impl Drop for Nsgd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/live-lab.yaml")
}

/// A copy of the lab policy the test can edit.
fn editable_policy(lab: &Lab) -> PathBuf {
    let path = lab.path("policy.yaml");
    std::fs::copy(policy(), &path).unwrap();
    path
}

fn write_file(lab: &Lab, name: &str, len: usize) -> Vec<u8> {
    // Deterministic, incompressible-looking content.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(lab.path(name), &data).unwrap();
    data
}

/// `file.bin` of `len` bytes, served on the allowed port 8080 and the
/// denied port 8081; returns its content.
fn serve_allowed_and_denied(lab: &mut Lab, len: usize) -> Vec<u8> {
    let data = write_file(lab, "file.bin", len);
    lab.http_server(8080);
    lab.http_server(8081);
    data
}

fn hits(report: &serde_json::Value, nsg: &str, rule: &str) -> u64 {
    report["rule_hits"][nsg][rule].as_u64().unwrap_or(0)
}

/// Every frame received was judged, and what went out is what was allowed.
fn assert_every_frame_accounted(report: &serde_json::Value, label: &str) {
    let ports = report["ports"].as_array().unwrap();
    let received: u64 = ports.iter().map(|p| p["received"].as_u64().unwrap()).sum();
    let sent: u64 = ports.iter().map(|p| p["sent"].as_u64().unwrap()).sum();
    assert_eq!(received, report["packets_in"].as_u64().unwrap(), "{label}");
    assert_eq!(sent, report["packets_allowed"].as_u64().unwrap(), "{label}");
}

#[test]
fn allowed_port_transfers_intact_denied_port_does_not_connect() {
    let (_serial, mut lab) = lab_or_skip!();
    let data = serve_allowed_and_denied(&mut lab, 3_000_000);
    let flow_log = lab.path("flows.json");
    let nsgd = lab.start_nsgd(&policy(), &["--flow-log", &flow_log.display().to_string()]);

    lab.expect_curl_intact("file.bin", &data, "allowed port");

    let denied = lab.curl(8081, "file.bin", &["--connect-timeout", "2"]);
    assert!(!denied.status.success(), "port 8081 must not connect");

    let report = nsgd.stop();
    assert_eq!(hits(&report, "servers-nsg", "Allow-Web"), 1, "{report:#}");
    assert!(hits(&report, "servers-nsg", "Deny-Rest") >= 1, "{report:#}");
    assert!(report["packets_denied"].as_u64().unwrap() >= 1);
    assert_every_frame_accounted(&report, "allowed and denied ports");

    // NSG flow log v2: the allowed web flow begins (B) and the denied one
    // is logged as denied (D), both under servers-nsg.
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&flow_log).unwrap()).unwrap();
    let tuples: Vec<String> = log["records"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|record| record["properties"]["flows"].as_array().unwrap().clone())
        .flat_map(|rule| rule["flows"].as_array().unwrap().clone())
        .flat_map(|mac| mac["flowTuples"].as_array().unwrap().clone())
        .map(|tuple| tuple.as_str().unwrap().to_string())
        .collect();
    let has = |needle: &str| tuples.iter().any(|t| t.contains(needle));
    assert!(
        has("10.20.1.10,10.20.2.20,") && has(",8080,T,I,A,B"),
        "{tuples:?}"
    );
    assert!(has(",8081,T,I,D,B"), "{tuples:?}");
}

#[test]
fn replies_need_no_rule_but_the_server_cannot_open_connections_to_the_client() {
    let (_serial, mut lab) = lab_or_skip!();
    write_file(&lab, "small.bin", 10_000);
    lab.http_server(8080);
    // A listener on the client: the clients' NSG denies all inbound.
    lab.spawn(
        "client",
        &["python3", "-m", "http.server", "8080", "--bind", CLIENT_IP],
    );
    let nsgd = lab.start_nsgd(&policy(), &[]);

    assert!(lab.curl(8080, "small.bin", &[]).status.success());
    std::thread::sleep(Duration::from_millis(300));
    let reverse = lab
        .exec(
            "server",
            &[
                "curl",
                "-sS",
                "--connect-timeout",
                "2",
                "-o",
                "/dev/null",
                &format!("http://{CLIENT_IP}:8080/"),
            ],
        )
        .output()
        .unwrap();
    assert!(!reverse.status.success(), "server -> client must be denied");

    let report = nsgd.stop();
    assert!(
        hits(&report, "clients-nsg", "Deny-All-Inbound") >= 1,
        "{report:#}"
    );
    assert!(report["allowed_by_reason"]["established"].as_u64().unwrap() > 0);
}

const UDP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
got = 0
for i in range(3):
    s.sendto(b"ping %d" % i, (sys.argv[1], int(sys.argv[2])))
    try:
        data, _ = s.recvfrom(100)
        got += data == b"ping %d" % i
    except socket.timeout:
        pass
print(got)
"#;

const UDP_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"#;

#[test]
fn udp_request_response_and_ping_follow_the_policy() {
    let (_serial, mut lab) = lab_or_skip!();
    lab.spawn("server", &["python3", "-c", UDP_ECHO, SERVER_IP, "9000"]);
    lab.spawn("server", &["python3", "-c", UDP_ECHO, SERVER_IP, "9001"]);
    std::thread::sleep(Duration::from_millis(500));
    let nsgd = lab.start_nsgd(&policy(), &[]);

    let echoes = |port: &str| {
        let out = lab
            .exec("client", &["python3", "-c", UDP_CLIENT, SERVER_IP, port])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(echoes("9000"), "3", "allowed UDP port must echo");
    assert_eq!(echoes("9001"), "0", "denied UDP port must not");

    assert!(lab.ping("client", SERVER_IP, 3), "ping is allowed");
    assert!(
        !lab.ping("server", CLIENT_IP, 2),
        "the clients' NSG denies ping in"
    );

    let report = nsgd.stop();
    assert_eq!(
        hits(&report, "servers-nsg", "Allow-UdpEcho"),
        1,
        "{report:#}"
    );
    assert_eq!(hits(&report, "servers-nsg", "Allow-Ping"), 1, "{report:#}");
    assert!(
        report["allowed_by_reason"]["non-ip"].as_u64().unwrap() >= 2,
        "ARP passes"
    );
}

#[test]
fn drop_non_ip_stops_arp_so_nothing_resolves() {
    let (_serial, mut lab) = lab_or_skip!();
    let nsgd = lab.start_nsgd(&policy(), &["--drop-non-ip"]);
    assert!(!lab.ping("client", SERVER_IP, 2));
    let report = nsgd.stop();
    assert!(
        report["denied_by_reason"]["non-ip"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
}

/// Replaces the access of one rule in the policy text.
fn set_access(policy: &Path, rule: &str, access: &str) {
    let text = std::fs::read_to_string(policy).unwrap();
    let start = text.find(&format!("name: {rule}")).expect("rule in policy");
    let at = start + text[start..].find("access: ").unwrap() + "access: ".len();
    let end = at + text[at..].find('\n').unwrap();
    let edited = format!("{}{access}{}", &text[..at], &text[end..]);
    std::fs::write(policy, edited).unwrap();
}

#[test]
fn reload_mid_transfer_keeps_it_and_applies_to_new_connections_only() {
    let (_serial, mut lab) = lab_or_skip!();
    // Larger than the client's TCP receive buffer can grow (6 MiB), so data
    // is still crossing the bridge after the reload.
    let data = write_file(&lab, "long.bin", 24_000_000);
    lab.http_server(8080);
    let policy = editable_policy(&lab);
    let nsgd = lab.start_nsgd(&policy, &[]);

    // About three seconds of transfer at 8 MB/s.
    let transfer = lab.start_download("long.bin", "8M", "30");
    std::thread::sleep(Duration::from_millis(800));

    // A broken policy is rejected and changes nothing.
    std::fs::write(&policy, "vnets: [").unwrap();
    nsgd.signal("HUP");
    nsgd.wait_for_log("reload rejected", 1);

    // Deny the web port: new connections only.
    std::fs::copy(self::policy(), &policy).unwrap();
    set_access(&policy, "Allow-Web", "Deny");
    nsgd.signal("HUP");
    nsgd.wait_for_log("reloaded", 1);
    let refused = lab.curl(8080, "long.bin", &["--connect-timeout", "2"]);
    assert!(!refused.status.success(), "new connection after the edit");

    lab.expect_download_intact(transfer, "long.bin", &data, "across the reload");

    let report = nsgd.stop();
    assert_eq!(report["reloads"].as_u64(), Some(1), "{report:#}");
    assert_eq!(report["reloads_rejected"].as_u64(), Some(1));
    assert_eq!(report["policy_generation"].as_u64(), Some(1));
    // Hits of both generations are kept, by name: the transfer (allowed)
    // and the refused connection (the edited rule now denies).
    assert_eq!(hits(&report, "servers-nsg", "Allow-Web"), 2, "{report:#}");
}

#[test]
fn reevaluate_on_reload_cuts_a_flow_the_new_policy_denies() {
    let (_serial, mut lab) = lab_or_skip!();
    // More than the client's receive buffer holds: the rest must cross
    // after the reload, and cannot.
    write_file(&lab, "long.bin", 24_000_000);
    lab.http_server(8080);
    let policy = editable_policy(&lab);
    let nsgd = lab.start_nsgd(&policy, &["--reevaluate-on-reload", "--watch"]);

    let transfer = lab.start_download("long.bin", "1M", "8");
    std::thread::sleep(Duration::from_millis(800));
    // --watch: editing the file is enough.
    set_access(&policy, "Allow-Web", "Deny");
    nsgd.wait_for_log("reloaded", 1);
    let finished = transfer.wait_with_output().unwrap();
    assert!(
        !finished.status.success(),
        "the re-evaluated flow must be cut: {} {}\n{}",
        String::from_utf8_lossy(&finished.stdout),
        String::from_utf8_lossy(&finished.stderr),
        nsgd.log()
    );
    let report = nsgd.stop();
    assert!(
        report["flows"]["reevaluated"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
}

const FLOOD: &str = r#"
import socket, sys, time
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect((sys.argv[1], 20000 + n % 20000))
    except BlockingIOError:
        pass
    s.close()
    n += 1
print(n)
"#;

#[test]
fn a_flood_of_new_connections_does_not_stop_an_established_transfer() {
    let (_serial, mut lab) = lab_or_skip!();
    let data = write_file(&lab, "long.bin", 24_000_000);
    lab.http_server(8080);
    // A small table, so the flood overfills it many times over.
    let nsgd = lab.start_nsgd(&policy(), &["--max-flows", "256"]);

    let transfer = lab.start_download("long.bin", "8M", "30");
    std::thread::sleep(Duration::from_millis(500));
    let flood = lab
        .exec("client", &["python3", "-c", FLOOD, SERVER_IP, "2.5"])
        .output()
        .unwrap();
    let attempts: u64 = String::from_utf8_lossy(&flood.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(attempts > 1000, "the flood sent {attempts} SYNs");

    lab.expect_download_intact(transfer, "long.bin", &data, "under the flood");

    let report = nsgd.stop();
    let flows = &report["flows"];
    assert!(flows["evicted"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(flows["evicted_established"].as_u64(), Some(0), "{report:#}");
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let (_serial, mut lab) = lab_or_skip!();
    let nsgd = lab.start_nsgd(&policy(), &["--metrics", "127.0.0.1:0"]);
    let log = nsgd.log();
    let address = log
        .lines()
        .find_map(|l| l.strip_prefix("nsgd run: metrics on http://"))
        .and_then(|l| l.strip_suffix("/metrics"))
        .expect("metrics address in the log")
        .to_string();
    assert!(lab.ping("client", SERVER_IP, 2));
    std::thread::sleep(Duration::from_millis(300));
    let metrics = lab
        .exec(
            "nva",
            &["curl", "-sS", &format!("http://{address}/metrics")],
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(text.contains("# TYPE nsgd_packets_total counter"), "{text}");
    assert!(
        text.contains("nsgd_rule_hits_total{nsg=\"servers-nsg\",rule=\"Allow-Ping\"} 1"),
        "{text}"
    );
    assert!(text.contains("nsgd_port_frames_total{port=\"n0\",direction=\"rx\"}"));
    nsgd.stop();
}

#[test]
fn every_ring_layout_and_sender_forwards_intact() {
    let (_serial, mut lab) = lab_or_skip!();
    let data = write_file(&lab, "file.bin", 1_000_000);
    lab.http_server(8080);
    for (rx, tx) in [("frames", "copy"), ("blocks", "ring"), ("blocks", "copy")] {
        let nsgd = lab.start_nsgd(&policy(), &["--rx-ring", rx, "--tx", tx]);
        lab.expect_curl_intact("file.bin", &data, &format!("{rx}/{tx}"));
        let report = nsgd.stop();
        assert_eq!(
            hits(&report, "servers-nsg", "Allow-Web"),
            1,
            "{rx}/{tx}: {report:#}"
        );
    }
}

const VLAN_SEND: &str = r#"
import socket, struct, sys
iface, dst_mac, src_mac = sys.argv[1], sys.argv[2], sys.argv[3]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
payload = b"nsgd-vlan-probe"
udp = struct.pack("!HHHH", 40000, 9000, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton("10.20.1.10"), socket.inet_aton("10.20.2.20"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
mac = lambda m: bytes.fromhex(m.replace(":", ""))
frame = mac(dst_mac) + mac(src_mac) + struct.pack("!HH", 0x8100, 100) + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for _ in range(3):
    s.send(frame)
"#;

const VLAN_SNIFF: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA: the tag the driver took out
s.settimeout(0.5)
open(sys.argv[2], "w").close()
end = time.time() + 8
while time.time() < end:
    try:
        data, ancillary, _, _ = s.recvmsg(4096, 64)
    except socket.timeout:
        continue
    if b"nsgd-vlan-probe" not in data:
        continue
    vlan = None
    for level, kind, value in ancillary:
        if level == 263 and kind == 8 and len(value) >= 20:
            status, = struct.unpack_from("I", value, 0)
            tci, = struct.unpack_from("H", value, 16)
            if status & (1 << 4):
                vlan = tci & 0xfff
    if vlan is None and data[12:14] == b"\x81\x00":
        vlan = struct.unpack("!H", data[14:16])[0] & 0xfff
    print(vlan, flush=True)
    break
"#;

fn mac_of(lab: &Lab, role: &str, interface: &str) -> String {
    let out = lab
        .exec(
            role,
            &["cat", &format!("/sys/class/net/{interface}/address")],
        )
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn vlan_tagged_frames_cross_with_their_tag() {
    let (_serial, mut lab) = lab_or_skip!();
    // Both senders put the stripped tag back: the ring copies it into the
    // slot, `--tx copy` gathers it between the addresses and the rest. XDP
    // sees the tag still in the frame.
    for options in [["--tx", "ring"], ["--tx", "copy"], ["--rx", "xdp"]] {
        let label = options.join(" ");
        let nsgd = lab.start_nsgd(&policy(), &options);
        let ready = lab.path(&format!("sniffer-ready-{}", options[1]));
        let sniffer = lab
            .exec(
                "server",
                &[
                    "python3",
                    "-c",
                    VLAN_SNIFF,
                    "s0",
                    &ready.display().to_string(),
                ],
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        while !ready.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (server_mac, client_mac) = (mac_of(&lab, "server", "s0"), mac_of(&lab, "client", "c0"));
        let sent = lab
            .exec(
                "client",
                &["python3", "-c", VLAN_SEND, "c0", &server_mac, &client_mac],
            )
            .output()
            .unwrap();
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
        let seen = sniffer.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&seen.stdout).trim(),
            "100",
            "{label}: the probe must reach the server still tagged with VLAN 100"
        );
        let report = nsgd.stop();
        assert_eq!(
            hits(&report, "servers-nsg", "Allow-UdpEcho"),
            1,
            "{report:#}"
        );
    }
}

/// Whether an XDP program is attached to the middle's `port`.
fn xdp_attached(lab: &Lab, port: &str) -> bool {
    let shown = run(&["ip", "-n", &lab.ns("nva"), "link", "show", port]);
    String::from_utf8_lossy(&shown.stdout).contains("xdp")
}

#[test]
fn xdp_receive_bridges_by_the_same_policy_and_detaches_on_exit() {
    let (_serial, mut lab) = lab_or_skip!();
    // Larger than the UMEM's 4096 frames: frames are handed back and reused.
    let data = serve_allowed_and_denied(&mut lab, 8_000_000);
    let bridge = lab.start_nsgd(&policy(), &["--rx", "xdp"]);
    assert!(
        bridge.log().contains(
            "receiving through AF_XDP (XDP program n0: in the driver, n1: in the driver)"
        ),
        "{}",
        bridge.log()
    );
    assert!(xdp_attached(&lab, "n0") && xdp_attached(&lab, "n1"));

    lab.expect_curl_intact("file.bin", &data, "allowed port through AF_XDP");
    let denied = lab.curl(8081, "file.bin", &["--connect-timeout", "2"]);
    assert!(!denied.status.success(), "port 8081 must not connect");
    assert!(lab.ping("client", SERVER_IP, 2), "ping is allowed");
    assert!(!lab.ping("server", CLIENT_IP, 1), "the server may not ping");

    let report = bridge.stop();
    assert_eq!(hits(&report, "servers-nsg", "Allow-Web"), 1, "{report:#}");
    assert!(hits(&report, "servers-nsg", "Deny-Rest") >= 1, "{report:#}");
    assert_every_frame_accounted(&report, "AF_XDP");
    assert!(report["packets_denied"].as_u64().unwrap() >= 1);
    assert!(
        !xdp_attached(&lab, "n0") && !xdp_attached(&lab, "n1"),
        "the programs go with nsgd"
    );

    // Killed outright, nsgd still leaves no program behind (its BPF links
    // close with the process), so nothing is left steering frames away.
    let mut killed = lab.start_nsgd(&policy(), &["--rx", "xdp"]);
    assert!(lab.ping("client", SERVER_IP, 1));
    killed.signal("KILL");
    killed.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(&lab, "n0") || xdp_attached(&lab, "n1") {
        assert!(Instant::now() < deadline, "an XDP program outlived nsgd");
        std::thread::sleep(Duration::from_millis(50));
    }

    let policy = policy().display().to_string();
    // A driver without XDP (loopback) gets the program in generic mode;
    // a queue that already has a socket is refused with the likely cause.
    must(&["ip", "-n", &lab.ns("nva"), "link", "set", "lo", "up"]);
    let generic =
        lab.start_nsgd_between(&[], ["n0", "lo"], &PathBuf::from(&policy), &["--rx", "xdp"]);
    let busy = lab
        .exec(
            "nva",
            &[
                nsgd(),
                "run",
                &policy,
                "--port",
                "lo",
                "--port",
                "n1",
                "--rx",
                "xdp",
            ],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("lo: bind AF_XDP socket") && stderr.contains("another nsgd"),
        "{stderr}"
    );
    assert!(
        generic
            .log()
            .contains("XDP program n0: in the driver, lo: generic"),
        "{}",
        generic.log()
    );
    generic.stop();

    // Two workers would need a symmetric split of each port's queues.
    let refused = lab
        .exec(
            "nva",
            &[
                nsgd(),
                "run",
                &policy,
                "--port",
                "n0",
                "--port",
                "n1",
                "--rx",
                "xdp",
                "--workers",
                "2",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("AF_XDP receive takes one worker"),
        "{stderr}"
    );
    assert!(!xdp_attached(&lab, "n0"), "nothing attached when refused");
}

/// A `setpriv` prefix that runs a command as user nobody, without groups,
/// holding only the capabilities `caps` (e.g. "+net_raw,+net_admin").
fn as_nobody_with(caps: &str) -> Vec<String> {
    vec![
        "setpriv".to_string(),
        "--reuid=65534".to_string(),
        "--regid=65534".to_string(),
        "--clear-groups".to_string(),
        format!("--inh-caps=-all,{caps}"),
        format!("--ambient-caps=-all,{caps}"),
        format!("--bounding-set=-all,{caps}"),
    ]
}

#[test]
fn runs_unprivileged_with_only_cap_net_raw() {
    let (_serial, mut lab) = lab_or_skip!("setpriv");
    // User nobody, no groups, and of all capabilities only CAP_NET_RAW.
    let wrapper = as_nobody_with("+net_raw");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let nsgd = lab.start_nsgd_as(&wrapper, &policy(), &[]);
    assert!(
        lab.ping("client", SERVER_IP, 2),
        "ping through an unprivileged nsgd"
    );
    let report = nsgd.stop();
    assert_eq!(hits(&report, "servers-nsg", "Allow-Ping"), 1, "{report:#}");
}

#[test]
fn xdp_receive_runs_unprivileged_with_the_capabilities_it_names() {
    let (_serial, mut lab) = lab_or_skip!("setpriv");
    // Without CAP_BPF the XDP program cannot be loaded: nsgd says so.
    let policy_path = policy().display().to_string();
    let mut refused: Vec<String> = as_nobody_with("+net_raw,+net_admin,+ipc_lock");
    refused.extend(
        [
            nsgd(),
            "run",
            &policy_path,
            "--port",
            "n0",
            "--port",
            "n1",
            "--rx",
            "xdp",
        ]
        .map(String::from),
    );
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let out = lab.exec("nva", &refused).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CAP_BPF"), "{stderr}");

    let wrapper = as_nobody_with("+net_raw,+net_admin,+bpf,+ipc_lock");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let bridge = lab.start_nsgd_as(&wrapper, &policy(), &["--rx", "xdp"]);
    assert!(
        lab.ping("client", SERVER_IP, 2),
        "ping through an unprivileged nsgd on AF_XDP"
    );
    let report = bridge.stop();
    assert_eq!(hits(&report, "servers-nsg", "Allow-Ping"), 1, "{report:#}");
}

#[test]
fn without_capabilities_it_fails_and_says_which_are_needed() {
    let (_serial, lab) = lab_or_skip!("setpriv");
    let policy = policy().display().to_string();
    let out = lab
        .exec(
            "nva",
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                nsgd(),
                "run",
                &policy,
                "--port",
                "n0",
                "--port",
                "n1",
            ],
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("n0: open AF_PACKET socket"), "{stderr}");
    assert!(stderr.contains("CAP_NET_RAW"), "{stderr}");
}

#[test]
fn checksums_left_to_offload_are_completed_on_the_way() {
    let (_serial, mut lab) = lab_or_skip!();
    // The ends hand their TCP/UDP checksums to the (virtual) NIC again:
    // frames reach nsgd with only the pseudo-header sum in the field.
    for (role, interface) in [("client", "c0"), ("server", "s0")] {
        must(&[
            "ip",
            "netns",
            "exec",
            &lab.ns(role),
            "ethtool",
            "-K",
            interface,
            "tx",
            "on",
        ]);
    }
    let data = write_file(&lab, "file.bin", 2_000_000);
    lab.http_server(8080);
    lab.spawn("server", &["python3", "-c", UDP_ECHO, SERVER_IP, "9000"]);
    std::thread::sleep(Duration::from_millis(300));
    let nsgd = lab.start_nsgd(&policy(), &[]);

    lab.expect_curl_intact("file.bin", &data, "download");
    let echoes = lab
        .exec("client", &["python3", "-c", UDP_CLIENT, SERVER_IP, "9000"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&echoes.stdout).trim(), "3");

    let report = nsgd.stop();
    let completed: u64 = report["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["checksum_completed"].as_u64().unwrap())
        .sum();
    assert!(completed > 1000, "{report:#}");
}

#[test]
fn two_workers_split_flows_by_hash_and_keep_both_directions_together() {
    let (_serial, mut lab) = lab_or_skip!();
    let data = write_file(&lab, "file.bin", 200_000);
    lab.http_server(8080);
    let nsgd = lab.start_nsgd(&policy(), &["--workers", "2", "--stats-interval", "0.5"]);
    // Twenty connections from twenty source ports: both workers get some,
    // and each must see its flows' replies (else they would be judged as
    // new flows into the clients' NSG, which denies them).
    for _ in 0..20 {
        lab.expect_curl_intact("file.bin", &data, "two workers");
    }
    std::thread::sleep(Duration::from_millis(600));
    assert!(nsgd.log().contains("nsgd run: packets "), "{}", nsgd.log());
    let report = nsgd.stop();
    assert_eq!(report["workers"].as_u64(), Some(2));
    assert_eq!(hits(&report, "servers-nsg", "Allow-Web"), 20, "{report:#}");
    assert_eq!(
        hits(&report, "clients-nsg", "Deny-All-Inbound"),
        0,
        "{report:#}"
    );
    assert_eq!(report["packets_denied"].as_u64(), Some(0), "{report:#}");
}

const UDP_FLOOD: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    for _ in range(100):
        try:
            s.sendto(b"x" * 18, (sys.argv[1], 9000))
            n += 1
        except OSError:
            pass
print(n)
"#;

#[test]
fn a_stalled_bridge_drops_and_counts_never_forwards_unjudged() {
    let (_serial, mut lab) = lab_or_skip!();
    // A receive ring of 16 slots per port (or AF_XDP's 4096 UMEM frames),
    // and a bridge that stops (SIGSTOP) while the client floods: the kernel
    // must drop what does not fit, and everything sent on must have been
    // judged.
    for options in [
        &["--rx-block-kib", "8", "--rx-blocks", "4"][..],
        &["--rx", "xdp"][..],
    ] {
        let label = options.join(" ");
        let nsgd = lab.start_nsgd(&policy(), options);
        let ping = lab
            .exec("client", &["ping", "-c", "1", "-W", "1", SERVER_IP])
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "{label}: ARP and ping before the stall"
        );
        nsgd.signal("STOP");
        let flood = lab
            .exec("client", &["python3", "-c", UDP_FLOOD, SERVER_IP, "1.0"])
            .output()
            .unwrap();
        nsgd.signal("CONT");
        let sent: u64 = String::from_utf8_lossy(&flood.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(sent > 10_000, "{label}: the flood sent {sent} datagrams");
        std::thread::sleep(Duration::from_millis(300));
        let report = nsgd.stop();
        let client_port = &report["ports"][0];
        assert_eq!(client_port["interface"], "n0");
        let kernel_drops = client_port["kernel_drops"].as_u64().unwrap();
        let received = client_port["received"].as_u64().unwrap();
        assert!(kernel_drops > 0, "{label}: {report:#}");
        assert!(received < sent, "{label}: {report:#}");
        assert_every_frame_accounted(&report, &label);
    }
}

#[test]
fn idle_flows_expire_while_the_bridge_is_quiet() {
    let (_serial, mut lab) = lab_or_skip!();
    lab.spawn("server", &["python3", "-c", UDP_ECHO, SERVER_IP, "9000"]);
    std::thread::sleep(Duration::from_millis(300));
    let flow_log = lab.path("flows.json");
    let nsgd = lab.start_nsgd(
        &policy(),
        &[
            "--udp-timeout",
            "1",
            "--flow-log",
            &flow_log.display().to_string(),
        ],
    );
    let echoes = lab
        .exec("client", &["python3", "-c", UDP_CLIENT, SERVER_IP, "9000"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&echoes.stdout).trim(), "3");
    // No packet after this: only the idle sweep can end the flow.
    std::thread::sleep(Duration::from_millis(2500));
    let report = nsgd.stop();
    // (The namespaces' own IPv6 multicast makes a few longer-lived flows.)
    let flows = &report["flows"];
    assert!(
        flows["live_at_end"].as_u64().unwrap() < flows["created"].as_u64().unwrap(),
        "{report:#}"
    );
    assert!(
        report["flows"]["expired"].as_u64().unwrap() >= 1,
        "{report:#}"
    );
    let log = std::fs::read_to_string(&flow_log).unwrap();
    assert!(log.contains(",9000,U,I,A,E,"), "{log}");
}

const TCP_PROBE: &str = r#"
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()
except OSError:
    sys.exit(1)
"#;

/// What each probe of the lab policy gives, in a fixed order.
fn probe_outcomes(lab: &mut Lab) -> Vec<(String, bool)> {
    for port in ["8080", "8081", "9100"] {
        lab.spawn(
            "server",
            &["python3", "-m", "http.server", port, "--bind", SERVER_IP],
        );
    }
    lab.spawn(
        "client",
        &["python3", "-m", "http.server", "8080", "--bind", CLIENT_IP],
    );
    for port in ["9000", "9001"] {
        lab.spawn("server", &["python3", "-c", UDP_ECHO, SERVER_IP, port]);
    }
    for port in [8080, 8081, 9100] {
        lab.wait_for_listener(port);
    }
    std::thread::sleep(Duration::from_millis(300));
    let tcp = |lab: &Lab, from: &str, to: &str, port: &str| {
        lab.exec(from, &["python3", "-c", TCP_PROBE, to, port])
            .output()
            .unwrap()
            .status
            .success()
    };
    let udp = |lab: &Lab, port: &str| {
        let out = lab
            .exec("client", &["python3", "-c", UDP_CLIENT, SERVER_IP, port])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "3"
    };
    vec![
        (
            "tcp client->server:8080".into(),
            tcp(lab, "client", SERVER_IP, "8080"),
        ),
        (
            "tcp client->server:8081".into(),
            tcp(lab, "client", SERVER_IP, "8081"),
        ),
        (
            "tcp client->server:9100".into(),
            tcp(lab, "client", SERVER_IP, "9100"),
        ),
        (
            "tcp server->client:8080".into(),
            tcp(lab, "server", CLIENT_IP, "8080"),
        ),
        ("udp client->server:9000".into(), udp(lab, "9000")),
        ("udp client->server:9001".into(), udp(lab, "9001")),
        (
            "ping client->server".into(),
            lab.ping("client", SERVER_IP, 1),
        ),
        (
            "ping server->client".into(),
            lab.ping("server", CLIENT_IP, 1),
        ),
    ]
}

#[test]
fn nsgd_and_the_nftables_reference_agree_on_every_probe() {
    let guard = serial_or_skip!("nft", "taskset");
    let expected: Vec<bool> = vec![true, false, true, false, true, false, true, false];

    let mut lab = Lab::from_script("nsgd");
    let nsgd = lab.start_nsgd(&policy(), &[]);
    let through_nsgd = probe_outcomes(&mut lab);
    nsgd.stop();
    drop(lab);

    let mut lab = Lab::from_script("bridge-nft");
    let through_nftables = probe_outcomes(&mut lab);
    drop(lab);

    // The probes can succeed: an unfiltered bridge lets every one through.
    let mut lab = Lab::from_script("bridge");
    let through_bridge = probe_outcomes(&mut lab);
    drop(lab);
    drop(guard);

    let outcomes = |probes: &[(String, bool)]| probes.iter().map(|p| p.1).collect::<Vec<_>>();
    assert_eq!(outcomes(&through_nsgd), expected, "nsgd: {through_nsgd:?}");
    assert_eq!(
        outcomes(&through_nftables),
        expected,
        "nftables: {through_nftables:?}"
    );
    assert!(
        through_bridge.iter().all(|p| p.1),
        "plain bridge: {through_bridge:?}"
    );
}

/// `VETH_NAPI=1`, the lab where every port receives in threaded NAPI with
/// offloads off: each port carries the XDP program that gives it NAPI, GRO
/// stays off, and nsgd (receiving through AF_PACKET behind that program)
/// still bridges by the policy and delivers a file intact.
#[test]
fn every_port_in_threaded_napi_without_gro_still_bridges_by_the_policy() {
    // llc: Debian package llvm.
    let guard = serial_or_skip!("llc", "taskset");
    let mut lab = Lab::from_script_with("nsgd", &[("VETH_NAPI", "1")]);
    for (role, port) in [
        ("client", "c0"),
        ("nva", "n0"),
        ("nva", "n1"),
        ("server", "s0"),
    ] {
        let link = run(&["ip", "-n", &lab.ns(role), "-d", "link", "show", port]);
        let link = String::from_utf8_lossy(&link.stdout);
        assert!(link.contains("prog/xdp"), "{port}: no XDP program: {link}");
        let threaded = format!("/sys/class/net/{port}/threaded");
        let threaded = lab.exec(role, &["cat", &threaded]).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&threaded.stdout).trim(),
            "1",
            "{port}"
        );
        let features = lab.exec(role, &["ethtool", "-k", port]).output().unwrap();
        assert!(
            String::from_utf8_lossy(&features.stdout).contains("generic-receive-offload: off"),
            "{port}: GRO must stay off"
        );
    }
    let data = serve_allowed_and_denied(&mut lab, 8_000_000);
    let nsgd = lab.start_nsgd(&policy(), &[]);
    lab.expect_curl_intact("file.bin", &data, "every port in NAPI");
    let denied = lab.curl(8081, "file.bin", &["--connect-timeout", "2"]);
    assert!(!denied.status.success(), "port 8081 must not connect");
    let report = nsgd.stop();
    drop(lab);
    drop(guard);
    assert_eq!(hits(&report, "servers-nsg", "Allow-Web"), 1, "{report:#}");
    assert!(hits(&report, "servers-nsg", "Deny-Rest") >= 1, "{report:#}");
    assert_every_frame_accounted(&report, "every port in NAPI");
}

#[test]
fn a_port_that_goes_away_stops_the_bridge_with_its_name() {
    let (_serial, mut lab) = lab_or_skip!();
    let mut nsgd = lab.start_nsgd(&policy(), &[]);
    assert!(lab.ping("client", SERVER_IP, 1));
    // Taking n1 down is survivable (it may come back); deleting it is not.
    must(&["ip", "-n", &lab.ns("nva"), "link", "set", "n1", "down"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        nsgd.child.try_wait().unwrap().is_none(),
        "a down port is survivable"
    );
    must(&["ip", "-n", &lab.ns("nva"), "link", "set", "n1", "up"]);
    assert!(
        lab.ping("client", SERVER_IP, 2),
        "forwarding again once n1 is up"
    );
    must(&["ip", "-n", &lab.ns("nva"), "link", "del", "n1"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = nsgd.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "nsgd kept running without n1");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    assert!(
        nsgd.log()
            .contains("n1: the interface went away; not forwarding"),
        "{}",
        nsgd.log()
    );
}

/// Turns GRO on for the middle's `ports`: veth then merges received TCP
/// segments into aggregates of up to 64 KiB.
fn middle_gro_on(lab: &Lab, ports: &[&str]) {
    for port in ports {
        must(&[
            "ip",
            "netns",
            "exec",
            &lab.ns("nva"),
            "ethtool",
            "-K",
            port,
            "gro",
            "on",
        ]);
    }
}

/// (packets, bytes) of one direction of an interface, from sysfs.
fn interface_counter(lab: &Lab, role: &str, interface: &str, direction: &str) -> (u64, u64) {
    let read = |what: &str| -> u64 {
        let path = format!("/sys/class/net/{interface}/statistics/{direction}_{what}");
        let out = lab.exec(role, &["cat", &path]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (read("packets"), read("bytes"))
}

#[test]
fn gro_aggregates_are_judged_whole_and_cut_back_into_wire_frames() {
    let (_serial, mut lab) = lab_or_skip!();
    middle_gro_on(&lab, &["n0", "n1"]);
    let data = write_file(&lab, "file.bin", 8_000_000);
    lab.http_server(8080);
    let nsgd = lab.start_nsgd(&policy(), &[]);
    assert!(
        nsgd.log()
            .contains("n1 merges received frames (gro): each aggregate is judged once"),
        "{}",
        nsgd.log()
    );
    // The download's data comes from the server: s0 -> n1 (merged there)
    // -> nsgd -> n0 (cut back) -> c0.
    let server_sent_before = interface_counter(&lab, "server", "s0", "tx");
    let client_got_before = interface_counter(&lab, "client", "c0", "rx");
    lab.expect_curl_intact("file.bin", &data, "download");
    let server_sent = interface_counter(&lab, "server", "s0", "tx");
    let client_got = interface_counter(&lab, "client", "c0", "rx");
    let report = nsgd.stop();

    let port = |name: &str| {
        report["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["interface"] == name)
            .unwrap()
            .clone()
    };
    let (n0, n1) = (port("n0"), port("n1"));
    let number = |port: &serde_json::Value, field: &str| port[field].as_u64().unwrap();
    assert!(number(&n1, "merged") > 10, "{report:#}");
    assert_eq!(number(&n1, "oversize") + number(&n0, "oversize"), 0);
    // Counted as wire frames: what the server's port sent and what the
    // client's port received during the download, give or take the few
    // frames (ARP, router solicitations) that crossed outside that window.
    // (s0's byte count is left out: with GRO on its peer, veth counts
    // bytes after taking off the Ethernet header.)
    let near = |ours: u64, wire: u64, slack: u64| ours.abs_diff(wire) <= slack;
    let sent_by_server = server_sent.0 - server_sent_before.0;
    let got_by_client = client_got.0 - client_got_before.0;
    let bytes_to_client = client_got.1 - client_got_before.1;
    assert!(sent_by_server > 5_000, "{sent_by_server}");
    assert!(
        near(number(&n1, "received"), sent_by_server, 8),
        "n1 counted {} frames; s0 sent {sent_by_server}",
        number(&n1, "received"),
    );
    assert!(
        near(number(&n0, "sent"), got_by_client, 8)
            && near(number(&n0, "sent_bytes"), bytes_to_client, 8 * 1514),
        "n0 sent {} frames, {} bytes; c0 got {got_by_client}, {bytes_to_client}",
        number(&n0, "sent"),
        number(&n0, "sent_bytes")
    );
}

#[test]
fn merging_offloads_with_block_rings_are_warned_about() {
    let (_serial, mut lab) = lab_or_skip!();
    middle_gro_on(&lab, &["n0"]);
    let nsgd = lab.start_nsgd(&policy(), &["--rx-ring", "blocks"]);
    let log = nsgd.log();
    assert!(
        log.contains(
            "warning: n0 merges received frames (gro), which --rx-ring blocks cannot send on"
        ),
        "{log}"
    );
    assert!(!log.contains("n1 merges"), "{log}");
    nsgd.stop();
}

#[test]
fn a_frame_longer_than_the_far_ports_mtu_is_counted_and_stalls_nothing() {
    let (_serial, mut lab) = lab_or_skip!();
    // n1 takes frames of at most 1014 bytes; n0 still takes 1514. A ping
    // of 1400 bytes crosses n0 fine and cannot leave through n1: it must
    // be refused as oversize there, and frames after it must still flow
    // (a frame the driver drops would otherwise be retried for ever at
    // the head of the transmit ring).
    must(&[
        "ip",
        "-n",
        &lab.ns("nva"),
        "link",
        "set",
        "n1",
        "mtu",
        "1000",
    ]);
    for options in [&[][..], &["--tx", "copy"][..]] {
        let label = format!("options {options:?}");
        let nsgd = lab.start_nsgd(&policy(), options);
        assert!(lab.ping("client", SERVER_IP, 1), "{label}: a small ping");
        let big = lab
            .exec(
                "client",
                &[
                    "ping", "-c", "2", "-i", "0.2", "-W", "1", "-s", "1400", SERVER_IP,
                ],
            )
            .output()
            .unwrap();
        assert!(
            !big.status.success(),
            "{label}: 1442-byte frames through a 1000-byte MTU"
        );
        assert!(
            lab.ping("client", SERVER_IP, 3),
            "{label}: small pings after the big ones"
        );
        let report = nsgd.stop();
        let n1 = &report["ports"][1];
        assert_eq!(n1["interface"], "n1");
        assert_eq!(n1["oversize"].as_u64().unwrap(), 2, "{label}: {report:#}");
        // Allowed, judged, and counted where they stopped.
        let total = |field: &str| -> u64 {
            let ports = report["ports"].as_array().unwrap();
            ports.iter().map(|p| p[field].as_u64().unwrap()).sum()
        };
        assert_eq!(total("received"), report["packets_in"].as_u64().unwrap());
        assert_eq!(
            total("sent") + total("oversize"),
            report["packets_allowed"].as_u64().unwrap(),
            "{label}: {report:#}"
        );
    }
}

/// Serves one connection on (address, port): 400 bursts of two 400-byte
/// segments (TCP_MAXSEG), a millisecond apart, which GRO merges in pairs.
const SMALL_SEGMENTS_SERVER: &str = r#"
import socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 400)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen()
connection, _ = server.accept()
for i in range(400):
    connection.sendall(bytes([i % 251]) * 800)
    time.sleep(0.001)
connection.close()
"#;

/// Reads a stream from (address, port) to its end; prints its length.
const STREAM_READER: &str = r#"
import socket, sys
connection = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
total = 0
while True:
    chunk = connection.recv(65536)
    if not chunk:
        break
    total += len(chunk)
print(total)
"#;

#[test]
fn gro_aggregates_shorter_than_a_ring_slot_still_leave_as_wire_frames() {
    let (_serial, mut lab) = lab_or_skip!();
    middle_gro_on(&lab, &["n0", "n1"]);
    lab.spawn(
        "server",
        &["python3", "-c", SMALL_SEGMENTS_SERVER, SERVER_IP, "8080"],
    );
    lab.wait_for_listener(8080);
    let nsgd = lab.start_nsgd(&policy(), &[]);
    let server_sent_before = interface_counter(&lab, "server", "s0", "tx").0;
    let client_got_before = interface_counter(&lab, "client", "c0", "rx").0;
    let read = lab
        .exec(
            "client",
            &["python3", "-c", STREAM_READER, SERVER_IP, "8080"],
        )
        .output()
        .unwrap();
    let server_sent = interface_counter(&lab, "server", "s0", "tx").0 - server_sent_before;
    let client_got = interface_counter(&lab, "client", "c0", "rx").0 - client_got_before;
    let report = nsgd.stop();
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "320000",
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let n1 = &report["ports"][1];
    assert_eq!(n1["interface"], "n1");
    // Aggregates of two 400-byte segments fit a ring slot: they never
    // take the path of an aggregate too long for one.
    assert!(n1["merged"].as_u64().unwrap() > 10, "{report:#}");
    assert_eq!(n1["oversize"].as_u64().unwrap(), 0, "{report:#}");
    // Every segment the server sent reached the client as its own frame.
    assert!(
        client_got.abs_diff(server_sent) <= 8,
        "s0 sent {server_sent} frames, c0 got {client_got}: {report:#}"
    );
}

/// Writes every frame `interface` sends (`out`) or receives (`in`) that
/// carries UDP port 9000 or TCP port 8080 over IPv4, one hex line each,
/// to a file, until `seconds` pass; prints "ready" once listening.
const FRAME_CAPTURE: &str = r#"
import socket, sys, time
interface, direction, path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
s.bind((interface, 0))
s.settimeout(0.2)
print("ready", flush=True)
frames = []
end = time.time() + seconds
while time.time() < end:
    try:
        data, address = s.recvfrom(65536)
    except socket.timeout:
        continue
    if (address[2] == socket.PACKET_OUTGOING) != (direction == "out"):
        continue
    if data[12:14] != b"\x08\x00" or len(data) < 38:
        continue
    ports = data[34:38]
    if (data[23] == 17 and ports[2:4] == b"\x23\x28") or (data[23] == 6 and b"\x1f\x90" in (ports[:2], ports[2:4])):
        frames.append(data.hex())
with open(path, "w") as f:
    f.write("\n".join(frames))
"#;

/// Sends 3000 datagrams of 18 bytes from one connected socket, in bursts.
const UDP_BURSTS: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], 9000))
for burst in range(30):
    for i in range(100):
        s.send(bytes([burst]) * 17 + bytes([i]))
"#;

#[test]
fn coalesced_frames_arrive_byte_for_byte_as_they_were_sent() {
    let (_serial, mut lab) = lab_or_skip!();
    let data = serve_allowed_and_denied(&mut lab, 3_000_000);
    lab.spawn("server", &["python3", "-c", UDP_ECHO, SERVER_IP, "9000"]);
    let nsgd = lab.start_nsgd(&policy(), &[]);
    // Client to server: the datagrams; server to client: the download.
    let captures = [
        ("client", "c0", "out", "udp-sent"),
        ("server", "s0", "in", "udp-arrived"),
        ("server", "s0", "out", "tcp-sent"),
        ("client", "c0", "in", "tcp-arrived"),
    ];
    let mut sniffers: Vec<Child> = captures
        .iter()
        .map(|(role, interface, direction, name)| {
            let path = lab.path(name);
            let mut child = lab
                .exec(
                    role,
                    &[
                        "python3",
                        "-c",
                        FRAME_CAPTURE,
                        interface,
                        direction,
                        path.to_str().unwrap(),
                        "6",
                    ],
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut ready = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut ready)
                .unwrap();
            assert_eq!(ready.trim(), "ready");
            child
        })
        .collect();
    lab.exec("client", &["python3", "-c", UDP_BURSTS, SERVER_IP])
        .output()
        .unwrap();
    lab.expect_curl_intact("file.bin", &data, "through coalescing");
    for sniffer in &mut sniffers {
        sniffer.wait().unwrap();
    }
    let report = nsgd.stop();
    let frames = |name: &str| -> Vec<String> {
        let text = std::fs::read_to_string(lab.path(name)).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let (udp_sent, udp_arrived) = (frames("udp-sent"), frames("udp-arrived"));
    let (tcp_sent, tcp_arrived) = (frames("tcp-sent"), frames("tcp-arrived"));
    assert!(
        udp_sent.len() >= 3000 && tcp_sent.len() > 2000,
        "{} {}",
        udp_sent.len(),
        tcp_sent.len()
    );
    assert!(
        udp_sent == udp_arrived,
        "UDP: {} sent, {} arrived, or bytes differ",
        udp_sent.len(),
        udp_arrived.len()
    );
    assert!(
        tcp_sent == tcp_arrived,
        "TCP: {} sent, {} arrived, or bytes differ",
        tcp_sent.len(),
        tcp_arrived.len()
    );
    let coalesced = |port: usize| report["ports"][port]["coalesced"].as_u64().unwrap();
    // n1 carried the datagrams out, n0 the download's segments.
    assert!(coalesced(1) > 1000 && coalesced(0) > 1000, "{report:#}");
}
