//! Runs the built `peas` binary with a temporary home.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;

fn peas(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peas"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("PEAS_HOME")
        .env_remove("RUST_LOG")
        .output()
        .expect("run peas")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: non-zero, not a panic (101), exactly one `error:` line on stderr.
fn assert_one_line_failure(o: &Output, what: &str) {
    let code = o.status.code().expect("exited normally, not by a signal");
    assert_ne!(code, 0, "{what}: should fail");
    assert_ne!(code, 101, "{what}: panicked: {}", stderr(o));
    let err = stderr(o);
    assert_eq!(
        err.lines().count(),
        1,
        "{what}: stderr is not one line: {err:?}"
    );
    assert!(err.starts_with("error: "), "{what}: {err:?}");
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("stdout is one JSON value")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
    file: PathBuf,
    data: Vec<u8>,
    peas: PathBuf,
}

fn fixture(size: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let data: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
    let file = dir.join("payload.bin");
    std::fs::write(&file, &data).unwrap();
    let home = dir.join("home");
    let peas_file = dir.join("payload.peas");
    let o = peas(
        &home,
        &[
            "create",
            file.to_str().unwrap(),
            "-o",
            peas_file.to_str().unwrap(),
            "--advertise",
            "127.0.0.1:4433",
            "--advertise",
            "[::1]:4433",
        ],
    );
    assert!(o.status.success(), "create failed: {}", stderr(&o));
    Fixture {
        _tmp: tmp,
        dir,
        home,
        file,
        data,
        peas: peas_file,
    }
}

#[test]
fn create_then_info_json_has_the_blake3_hash() {
    let f = fixture(3 << 20 | 12345);
    let v = json(&peas(
        &f.home,
        &["info", "--json", f.peas.to_str().unwrap()],
    ));
    assert_eq!(v["hash"], blake3::hash(&f.data).to_hex().as_str());
    assert_eq!(v["size"], f.data.len() as u64);
    assert_eq!(v["partition_size"], 1 << 20);
    assert_eq!(v["partitions"], 4);
    assert_eq!(v["name"], "payload.bin");
    assert_eq!(v["signature_valid"], true);
    assert_eq!(v["version"], 1);
    assert!(v["created_at"].as_u64().unwrap() > 1_600_000_000);
    let owners = v["owners"].as_array().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["id"], v["creator"]);
    assert_eq!(
        owners[0]["addrs"],
        serde_json::json!(["127.0.0.1:4433", "[::1]:4433"])
    );
    assert!(owners[0]["relay"].is_null());
    // The text form says the signature is valid.
    let o = peas(&f.home, &["info", f.peas.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("signature:      valid"));
    // The home has the key, the store and the database, and no stray temp files.
    assert!(f.home.join("secret.key").is_file());
    assert!(f.home.join("peas.redb").is_file());
    let stray: Vec<_> = std::fs::read_dir(&f.dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn create_json_and_partition_size() {
    let f = fixture(100_000);
    let out = f.dir.join("p.peas");
    let v = json(&peas(
        &f.home,
        &[
            "create",
            f.file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--partition-size",
            "16KiB",
            "--name",
            "renamed.bin",
            "--json",
        ],
    ));
    assert_eq!(v["partition_size"], 16384);
    assert_eq!(v["partitions"], 7);
    assert_eq!(v["name"], "renamed.bin");
    assert!(v["ticket"].as_str().unwrap().starts_with("peas1"));
    let o = peas(
        &f.home,
        &[
            "create",
            f.file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--partition-size",
            "3MiB",
        ],
    );
    assert_one_line_failure(&o, "non power of two partition size");
    assert!(stderr(&o).contains("power of two"));
    let o = peas(
        &f.home,
        &[
            "create",
            f.file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--partition-size",
            "lots",
        ],
    );
    assert_ne!(o.status.code(), Some(0));
    assert_ne!(o.status.code(), Some(101));
}

#[test]
fn flipped_bytes_are_rejected_with_one_line() {
    let f = fixture(1 << 20);
    let bytes = std::fs::read(&f.peas).unwrap();
    let len = bytes.len();
    for pos in [
        0,
        3,
        4,
        5,
        20,
        40,
        len / 2,
        len - 65,
        len - 64,
        len - 30,
        len - 1,
    ] {
        let mut b = bytes.clone();
        b[pos] ^= 0x5a;
        let bad = f.dir.join(format!("bad{pos}.peas"));
        std::fs::write(&bad, &b).unwrap();
        for cmd in [vec!["info"], vec!["info", "--json"]] {
            let mut args = cmd.clone();
            args.push(bad.to_str().unwrap());
            let o = peas(&f.home, &args);
            assert_one_line_failure(&o, &format!("flip at {pos}"));
            assert!(stdout(&o).is_empty());
        }
        let o = peas(
            &f.home,
            &["verify", bad.to_str().unwrap(), f.file.to_str().unwrap()],
        );
        assert_one_line_failure(&o, &format!("verify with flip at {pos}"));
        assert_eq!(o.status.code(), Some(2));
    }
    // A flip inside the signature names the problem, prefixed with the file name.
    let mut b = bytes.clone();
    b[len - 1] ^= 1;
    let bad = f.dir.join("big.peas");
    std::fs::write(&bad, &b).unwrap();
    let o = peas(&f.home, &["info", bad.to_str().unwrap()]);
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "error: {}: manifest signature does not verify",
            bad.display()
        )
    );
    // Truncated and empty files.
    std::fs::write(&bad, &bytes[..len / 2]).unwrap();
    assert_one_line_failure(
        &peas(&f.home, &["info", bad.to_str().unwrap()]),
        "truncated",
    );
    std::fs::write(&bad, b"").unwrap();
    assert_one_line_failure(&peas(&f.home, &["info", bad.to_str().unwrap()]), "empty");
}

#[test]
fn verify_tells_matching_from_changed_files() {
    let f = fixture(2 << 20);
    let m = f.peas.to_str().unwrap();
    let o = peas(&f.home, &["verify", m, f.file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&peas(
        &f.home,
        &["verify", "--json", m, f.file.to_str().unwrap()],
    ));
    assert_eq!(v["matches"], true);

    let changed = f.dir.join("changed.bin");
    let mut d = f.data.clone();
    d[1_000_000] ^= 1;
    std::fs::write(&changed, &d).unwrap();
    let o = peas(&f.home, &["verify", m, changed.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_one_line_failure(&o, "changed file");
    assert!(stderr(&o).contains("does not match"));
    let o = peas(&f.home, &["verify", "--json", m, changed.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["matches"], false);

    std::fs::write(&changed, &f.data[..f.data.len() - 1]).unwrap();
    let o = peas(&f.home, &["verify", m, changed.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("size is"));

    let o = peas(
        &f.home,
        &["verify", m, f.dir.join("missing").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_one_line_failure(&o, "missing file");
    let o = peas(&f.home, &["verify", "nope.peas", f.file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_one_line_failure(&o, "missing manifest");
}

#[test]
fn ticket_works_in_place_of_the_file() {
    let f = fixture(500_000);
    let v = json(&peas(
        &f.home,
        &["info", "--json", f.peas.to_str().unwrap()],
    ));
    let out = f.dir.join("again.peas");
    let c = json(&peas(
        &f.home,
        &[
            "create",
            f.file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    let ticket = c["ticket"].as_str().unwrap().to_owned();
    let t = json(&peas(&f.home, &["info", "--json", &ticket]));
    assert_eq!(t["hash"], v["hash"]);
    assert_eq!(t["creator"], v["creator"], "same home, same key");
    let o = peas(&f.home, &["verify", &ticket, f.file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A ticket saved in a file (with a trailing newline) also works.
    let tf = f.dir.join("ticket.txt");
    std::fs::write(&tf, format!("{ticket}\n")).unwrap();
    assert_eq!(
        json(&peas(&f.home, &["info", "--json", tf.to_str().unwrap()]))["hash"],
        v["hash"]
    );
    // A damaged ticket fails cleanly.
    let mut bad: Vec<char> = ticket.chars().collect();
    let i = bad.len() / 2;
    bad[i] = if bad[i] == 'a' { 'b' } else { 'a' };
    let bad: String = bad.into_iter().collect();
    assert_one_line_failure(&peas(&f.home, &["info", &bad]), "damaged ticket");
    assert_one_line_failure(&peas(&f.home, &["info", "peas1"]), "empty ticket");
    assert_one_line_failure(&peas(&f.home, &["info", "hello"]), "not a ticket");
}

#[test]
fn unsafe_names_are_rejected_by_create() {
    let f = fixture(10_000);
    let out = f.dir.join("x.peas");
    for name in ["../../etc/passwd", "/etc/passwd", "a/b", "..", "C:\\x", ""] {
        let o = peas(
            &f.home,
            &[
                "create",
                f.file.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--name",
                name,
            ],
        );
        assert_one_line_failure(&o, name);
        assert!(!out.exists());
    }
}

// A manifest written by hand from docs/manifest.md, independent of peas-proto.
#[derive(Serialize)]
struct DocOwner {
    id: [u8; 32],
    addrs: Vec<SocketAddr>,
    relay: Option<String>,
}

#[derive(Serialize)]
struct DocBody {
    hash: [u8; 32],
    size: u64,
    name: String,
    partition_size: u64,
    created_at: u64,
    owners: Vec<DocOwner>,
    creator: [u8; 32],
}

fn doc_manifest(name: &str, data: &[u8]) -> Vec<u8> {
    doc_manifest_of(
        name,
        *blake3::hash(data).as_bytes(),
        data.len() as u64,
        1 << 20,
    )
}

fn doc_manifest_of(name: &str, hash: [u8; 32], size: u64, partition_size: u64) -> Vec<u8> {
    let key = SigningKey::from_bytes(&[3; 32]);
    let body = DocBody {
        hash,
        size,
        name: name.to_owned(),
        partition_size,
        created_at: 1_700_000_000,
        owners: vec![DocOwner {
            id: key.verifying_key().to_bytes(),
            addrs: vec!["10.0.0.1:7000".parse().unwrap()],
            relay: None,
        }],
        creator: key.verifying_key().to_bytes(),
    };
    let body = postcard::to_stdvec(&body).unwrap();
    let mut msg = b"peas manifest signature\0".to_vec();
    msg.push(1);
    msg.extend_from_slice(&body);
    let sig = key.sign(&msg);
    let mut file = b"PEAS\x01".to_vec();
    file.extend_from_slice(&body);
    file.extend_from_slice(&sig.to_bytes());
    file
}

#[test]
fn hand_written_manifests_follow_the_spec_and_unsafe_names_are_rejected() {
    let f = fixture(1000);
    let good = f.dir.join("good.peas");
    std::fs::write(&good, doc_manifest("payload.bin", &f.data)).unwrap();
    let v = json(&peas(&f.home, &["info", "--json", good.to_str().unwrap()]));
    assert_eq!(v["hash"], blake3::hash(&f.data).to_hex().as_str());
    assert_eq!(v["owners"][0]["addrs"][0], "10.0.0.1:7000");
    let o = peas(
        &f.home,
        &["verify", good.to_str().unwrap(), f.file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Ticket form of the same bytes.
    let ticket = format!(
        "peas1{}",
        data_encoding::BASE32_NOPAD
            .encode(&doc_manifest("payload.bin", &f.data))
            .to_lowercase()
    );
    assert_eq!(
        json(&peas(&f.home, &["info", "--json", &ticket]))["hash"],
        v["hash"]
    );

    for name in ["../../etc/passwd", "/etc/passwd", "a/b", "..", "C:\\x"] {
        let bad = f.dir.join("bad.peas");
        std::fs::write(&bad, doc_manifest(name, &f.data)).unwrap();
        let o = peas(&f.home, &["info", bad.to_str().unwrap()]);
        assert_one_line_failure(&o, name);
        assert!(stderr(&o).contains("unsafe"), "{}", stderr(&o));
    }
}

#[test]
fn home_from_env_and_busy_home() {
    let f = fixture(1000);
    // PEAS_HOME is honoured when --home is absent.
    let home2 = f.dir.join("home2");
    let out = f.dir.join("e.peas");
    let o = Command::new(env!("CARGO_BIN_EXE_peas"))
        .args([
            "create",
            f.file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .env("PEAS_HOME", &home2)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(home2.join("secret.key").is_file());
    // A home held by another process (here: this test holding its lock) is refused at once.
    let lock = std::fs::File::open(f.home.join("lock")).unwrap();
    lock.try_lock().unwrap();
    let o = peas(
        &f.home,
        &[
            "create",
            f.file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_one_line_failure(&o, "busy home");
    assert!(
        stderr(&o).contains("is in use by another peas process"),
        "{}",
        stderr(&o)
    );
    drop(lock);
    // A missing input file is one clean line.
    let o = peas(
        &f.home,
        &[
            "create",
            f.dir.join("nope").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_one_line_failure(&o, "missing input");
}

#[test]
fn usage_errors_are_one_line_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["create"],
        vec!["info", "--bogus", "x"],
        vec!["verify", "only-one-arg"],
        vec!["create", "f", "-o", "x", "--partition-size", "lots"],
        vec!["create", "f", "-o", "x", "--advertise", "not-an-addr"],
        vec!["frobnicate"],
    ] {
        let o = peas(tmp.path(), &args);
        assert_one_line_failure(&o, &args.join(" "));
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    let o = peas(tmp.path(), &["--version"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("peas "));
}

#[test]
fn create_refuses_to_overwrite_its_input_and_checks_the_output_first() {
    let f = fixture(1000);
    let o = peas(
        &f.home,
        &[
            "create",
            f.file.to_str().unwrap(),
            "-o",
            f.file.to_str().unwrap(),
        ],
    );
    assert_one_line_failure(&o, "-o is the input");
    assert_eq!(std::fs::read(&f.file).unwrap(), f.data, "input intact");
    let o = peas(
        &f.home,
        &[
            "create",
            f.file.to_str().unwrap(),
            "-o",
            f.dir.join("no/such/dir/x.peas").to_str().unwrap(),
        ],
    );
    assert_one_line_failure(&o, "missing output dir");
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn zero_rates_timeouts_and_bad_relays_are_usage_errors() {
    let f = fixture(1000);
    let m = f.peas.to_str().unwrap();
    let out = f.dir.join("out.bin");
    let out = out.to_str().unwrap();
    for args in [
        vec!["install", m, "-o", out, "--max-upload-rate", "0"],
        vec!["install", m, "-o", out, "--max-download-rate", "0B"],
        vec!["install", m, "-o", out, "--timeout", "0"],
        vec!["install", m, "-o", out, "--relay", "ftp://example.com"],
        vec!["seed", "--no-upload"],
    ] {
        let o = peas(&f.home, &args);
        assert_one_line_failure(&o, &args.join(" "));
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    assert!(!f.dir.join("out.bin").exists());
}

#[test]
fn install_checks_free_space_before_downloading() {
    let f = fixture(1000);
    // 32 TiB in 1 GiB partitions: more than any test machine has free.
    let huge = f.dir.join("huge.peas");
    std::fs::write(
        &huge,
        doc_manifest_of("huge.bin", [7; 32], 1 << 45, 1 << 30),
    )
    .unwrap();
    let out = f.dir.join("huge.bin");
    let o = peas(
        &f.home,
        &[
            "install",
            huge.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    assert_one_line_failure(&o, "no room");
    assert!(
        stderr(&o).contains("not enough free space"),
        "{}",
        stderr(&o)
    );
    // With --json the last line of stdout is a failed summary.
    let last: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().last().expect("a summary line")).unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(last["ok"], false);
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("not enough free space")
    );
    assert!(!out.exists());
}

/// `peas create FILE -o OUT --copy` in `home`.
fn create_copy(home: &Path, file: &Path, out: &Path) -> Output {
    let (file, out) = (file.to_str().unwrap(), out.to_str().unwrap());
    peas(home, &["create", file, "-o", out, "--copy"])
}

/// Starts `peas seed --json` on `home`, reads its first two JSON lines, and stops it.
fn first_seed_events(home: &Path) -> [serde_json::Value; 2] {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_peas"))
        .arg("--home")
        .arg(home)
        .args(["seed", "--json", "--listen", "127.0.0.1:0"])
        .env_remove("PEAS_HOME")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let events = [next(), next()];
    child.kill().unwrap();
    let _ = child.wait();
    events
}

#[test]
fn seed_refuses_content_whose_file_changed_since_create() {
    // Large enough to be referenced in place, not copied into the store.
    let f = fixture(256 * 1024);
    let mut changed = f.data.clone();
    changed[1000] ^= 1;
    std::fs::write(&f.file, &changed).unwrap();
    let [first, second] = first_seed_events(&f.home);
    assert_eq!(first["event"], "not_serving", "{first}");
    assert_eq!(first["hash"], blake3::hash(&f.data).to_hex().as_str());
    assert!(
        first["reason"].as_str().unwrap().contains("changed"),
        "{first}"
    );
    assert_eq!(
        (&second["event"], &second["contents"]),
        (&"serving".into(), &0.into())
    );

    // With --copy the store keeps its own copy: the file may change.
    let home2 = f.dir.join("home-copy");
    let out = f.dir.join("copy.peas");
    let o = create_copy(&home2, &f.file, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(&f.file, &f.data).unwrap();
    let [first, _] = first_seed_events(&home2);
    assert_eq!(
        (&first["event"], &first["complete"]),
        (&"serving".into(), &true.into()),
        "{first}"
    );
}

#[test]
fn verify_json_reports_unreadable_files_and_info_prints_the_ticket() {
    let f = fixture(1000);
    let missing = f.dir.join("missing.bin");
    let o = peas(
        &f.home,
        &[
            "verify",
            "--json",
            f.peas.to_str().unwrap(),
            missing.to_str().unwrap(),
        ],
    );
    assert_one_line_failure(&o, "missing file");
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["matches"], false);
    assert!(v["error"].as_str().unwrap().contains("missing.bin"), "{v}");

    let o = peas(&f.home, &["info", f.peas.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ticket = stdout(&o).lines().last().unwrap().to_owned();
    assert!(ticket.starts_with("peas1"), "{ticket}");
    let v = json(&peas(&f.home, &["info", "--json", &ticket]));
    assert_eq!(v["ticket"], ticket.as_str());
}

#[test]
fn remove_reclaims_installed_content_and_names_unknown_content() {
    let f = fixture(300 * 1024);
    let hash = blake3::hash(&f.data).to_hex().to_string();
    // A copy in the store (as an install leaves it).
    let home2 = f.dir.join("home2");
    let o = create_copy(&home2, &f.file, &f.dir.join("c.peas"));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&peas(&home2, &["remove", "--json", &hash]));
    assert_eq!(v["removed"][0], hash.as_str());
    assert!(
        v["freed_bytes"].as_u64().unwrap() >= f.data.len() as u64,
        "{v}"
    );
    // Removed: seed has nothing left to serve, a second remove names it unknown.
    let o = peas(&home2, &["remove", &hash]);
    assert_one_line_failure(&o, "second remove");
    assert!(stderr(&o).contains("not in this home"), "{}", stderr(&o));

    // Content served in place: the file stays.
    let o = peas(&f.home, &["remove", f.peas.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&hash), "{}", stdout(&o));
    assert_eq!(std::fs::read(&f.file).unwrap(), f.data);

    // A home that does not exist is not created.
    let none = f.dir.join("no-home");
    let o = peas(&none, &["remove", &hash]);
    assert_one_line_failure(&o, "no home");
    assert!(!none.exists());
}

#[test]
fn a_lost_key_in_a_home_with_content_is_warned_about() {
    let f = fixture(1000);
    let old = stdout(&peas(&f.home, &["id"]));
    std::fs::remove_file(f.home.join("secret.key")).unwrap();
    let o = peas(&f.home, &["id"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(stdout(&o), old);
    assert!(
        stderr(&o).contains("secret.key was missing"),
        "{}",
        stderr(&o)
    );
}
