//! The built `pwreset` binary: migrate, purge, serve and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

fn pwreset(dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pwreset"));
    command
        .current_dir(dir.path())
        .env_remove("PWRESET_DATABASE_URL")
        .env("PWRESET_ARGON2_MEMORY_KIB", "64")
        .env("PWRESET_ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "info");
    command
}

#[test]
fn migrate_and_purge_work_on_the_sqlite_default() {
    let dir = TempDir::new().unwrap();
    let out = pwreset(&dir).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("pwreset.db").exists(), "database created in the working directory");

    let out = pwreset(&dir).arg("purge").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "purged 0 expired tokens and 0 events past retention");

    let key = dir.path().join("pwreset.db.key");
    assert!(key.exists(), "the default key file is created beside the database");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn a_bad_configuration_fails_at_start_up() {
    let dir = TempDir::new().unwrap();
    let out = pwreset(&dir).args(["serve", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no caller key"));
    let out = pwreset(&dir).args(["serve", "--database-url", "postgres://127.0.0.1/none"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server key is required"));
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = TempDir::new().unwrap();
    let mut child = pwreset(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = lines.by_ref().map_while(Result::ok).find(|l| l.contains("pwreset listening"));
    assert!(listening.is_some(), "server announced its address");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    // Wait on the exit in a thread, bounded by a deadline on the channel.
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let _ = done.send((child.wait(), rest));
    });
    let (exit, rest) = exited.recv_timeout(Duration::from_secs(15)).expect("server exits after SIGTERM");
    let exit = exit.unwrap();
    assert!(exit.success(), "exit status {exit:?}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

/// Every setting of the server binary that carries a secret, with a value to look for.
const SECRET_SETTINGS: [(&str, &str); 4] = [
    ("PWRESET_DATABASE_URL", "postgres://pwreset:hunter2-db-secret@db.internal/pwreset"),
    ("PWRESET_SECRET_KEY", "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXktMDA="),
    ("PWRESET_PREVIOUS_SECRET_KEYS", "cHJldmlvdXMta2V5LXByZXZpb3VzLWtleS1wcmV2aW91cy0w"),
    ("PWRESET_CALLER_KEYS", "reset=caller-key-secret-0123456789"),
];

#[test]
fn help_never_shows_the_values_of_secret_settings() {
    let dir = TempDir::new().unwrap();
    let keys = ["--database-url", "--secret-key", "--previous-secret-key"];
    for (command, listed) in [
        (&["--help"][..], &["serve", "migrate", "purge", "import"][..]),
        (&["serve", "--help"], &["--database-url", "--secret-key", "--previous-secret-key", "--caller-key"]),
        (&["migrate", "--help"], &["--database-url"]),
        (&["purge", "--help"], &keys),
        (&["import", "--help"], &["--database-url"]),
    ] {
        let out = pwreset(&dir).args(command).envs(SECRET_SETTINGS).output().unwrap();
        assert!(out.status.success(), "{command:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(listed.iter().all(|flag| help.contains(flag)), "{command:?}: {help}");
        for secret in ["hunter2-db-secret", "c2VjcmV0LWtleS1zZWNyZXQta2V5", "cHJldmlvdXMta2V5", "caller-key-secret"] {
            assert!(!help.contains(secret), "{command:?} --help shows {secret}");
        }
    }
    // Structurally: a variable whose name says it holds a key, secret, URL, pepper or
    // credential hides its value in every subcommand (a new one is caught here), unless
    // it names a file.
    use clap::CommandFactory;
    let mut command = pwreset::cli::Cli::command();
    command.build(); // the commands as parsing sees them
    let mut checked = 0;
    for sub in std::iter::once(&command).chain(command.get_subcommands()) {
        for arg in sub.get_arguments() {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else { continue };
            let secret_looking =
                ["KEY", "SECRET", "URL", "PEPPER", "CREDENTIAL", "PASSWORD_HASH"].iter().any(|word| env.contains(word));
            let a_file = env.ends_with("_FILE") || env == "PWRESET_TLS_KEY";
            if secret_looking && !a_file {
                assert!(arg.is_hide_env_values_set(), "{env} of `{}` shows its value in --help", sub.get_name());
                checked += 1;
            }
        }
    }
    assert!(checked >= SECRET_SETTINGS.len(), "{checked}");
}

#[test]
fn each_subcommand_lists_only_its_own_flags() {
    let dir = TempDir::new().unwrap();
    let help = |command: &str| {
        let out = pwreset(&dir).args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command} --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let serve = help("serve");
    assert!(serve.contains("--listen") && serve.contains("--import-max-cost-ms"), "{serve}");
    let import = help("import");
    assert!(import.contains("--import-max-cost-ms") && import.contains("--no-migrate"), "{import}");
    for serve_only in ["--listen", "--caller-key", "--argon2-memory-kib", "--token-ttl", "--sweep-interval"] {
        assert!(!import.contains(serve_only), "import --help lists {serve_only}: {import}");
    }
    let migrate = help("migrate");
    assert!(!migrate.contains("--listen") && !migrate.contains("--secret-key"), "{migrate}");
}

#[test]
fn migrate_leaves_the_servers_settings_to_the_server() {
    // The image's listener, which `serve` refuses without caller keys.
    let dir = TempDir::new().unwrap();
    let out = pwreset(&dir).arg("migrate").env("PWRESET_LISTEN", "0.0.0.0:50051").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_refused_secret_is_not_echoed_in_the_error() {
    let dir = TempDir::new().unwrap();
    // A wrong role, a short key, the parts swapped, a padded key with no role.
    let values = [
        "admin=caller-key-secret-0123456789",
        "reset=short-secret",
        "caller-key-secret-0123456789=reset",
        "Y2FsbGVyLWtleS1zZWNyZXQtMDEyMzQ1Njc4OQ==",
    ];
    for value in values {
        let out = pwreset(&dir).arg("serve").env("PWRESET_CALLER_KEYS", value).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--caller-key"), "{stderr}");
        assert!(!stderr.contains("-secret") && !stderr.contains("Y2FsbGVy"), "the refused key is printed: {stderr}");
    }
}

#[test]
fn the_database_password_is_in_no_log_line_even_at_trace() {
    let dir = TempDir::new().unwrap();
    // No such role: the connection fails inside the driver's span.
    let out = pwreset(&dir)
        .args(["migrate", "--database-url", "postgres://someone:db-hunter2-secret@127.0.0.1:5432/nowhere"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connecting to the database"), "{stderr}");
    assert!(!stderr.contains("db-hunter2-secret"), "the password is logged: {stderr}");
}

/// Runs the binary with a deadline: (success, stderr). A command that does not end in
/// 20 s fails the test (and is killed).
fn run_bounded(mut command: Command) -> (bool, String) {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let mut stderr = child.stderr.take().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = done.send((child.wait(), text));
    });
    match finished.recv_timeout(Duration::from_secs(20)) {
        Ok((status, text)) => (status.unwrap().success(), text),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("still running after 20 s: {command:?}");
        }
    }
}

#[test]
fn a_breached_list_is_reported_at_start_up_and_a_bad_one_refused() {
    let dir = TempDir::new().unwrap();
    let hex = |p: &str| -> String {
        use sha1::Digest;
        sha1::Sha1::digest(p.as_bytes()).iter().map(|b| format!("{b:02X}")).collect()
    };
    let mut lines: Vec<String> = (0..302).map(|i| format!("{}:{}", hex(&format!("listed {i}")), i + 1)).collect();
    lines.sort();
    let listed = lines.join("\r\n");
    let write = |name: &str, contents: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let header = write("header.txt", format!("SHA1:Count\r\n{listed}\r\n"));
    let mut server = pwreset(&dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--breached-passwords", &header])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // What it logged until it listened (or until it exited, if it did not start).
    let start_up: Vec<String> = BufReader::new(server.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("pwreset listening"))
        .collect();
    let _ = server.kill();
    let _ = server.wait();
    let line = start_up.iter().find(|l| l.contains("breached-password list loaded")).cloned().unwrap_or_default();
    for field in ["format=sha1-sorted", "entries=302", "approximate=false", "skipped_lines=1"] {
        assert!(line.contains(field), "{field} missing from {line:?}");
    }

    let mixed = write("mixed.txt", format!("{listed}\nan appended plain password\n"));
    let empty = write("empty.txt", "# nothing yet\n\n".into());
    for (file, says) in [(&mixed, "line 303 is not SHA1-HEX[:count]"), (&empty, "holds no passwords")] {
        let mut command = pwreset(&dir);
        command.args(["serve", "--listen", "127.0.0.1:0", "--breached-passwords", file]);
        let (ok, stderr) = run_bounded(command);
        assert!(!ok, "served with {file}: {stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("pwreset listening"), "{stderr}");
    }
}

#[test]
fn import_of_anything_but_a_readable_file_ends_at_once() {
    let dir = TempDir::new().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A 1 GiB file that is one line (sparse: no disk used).
    let huge = dir.path().join("one-line.jsonl");
    std::fs::File::create(&huge).unwrap().set_len(1 << 30).unwrap();
    let subdir = dir.path().join("accounts");
    std::fs::create_dir(&subdir).unwrap();
    for (path, says) in [
        (subdir.as_path(), "is a directory"),
        (std::path::Path::new("/dev/zero"), "not a regular file"),
        (fifo.as_path(), "not a regular file"),
        (dir.path().join("missing.jsonl").as_path(), "No such file"),
        (huge.as_path(), "line 1 is longer than 65536 bytes"),
    ] {
        let mut command = pwreset(&dir);
        command.arg("import").arg(path);
        let (ok, stderr) = run_bounded(command);
        assert!(!ok, "{path:?}: {stderr}");
        assert!(stderr.contains(says), "{path:?}: {stderr}");
    }
}

#[test]
fn a_short_code_range_too_small_for_the_attempt_cap_fails_at_start_up() {
    let dir = TempDir::new().unwrap();
    let mut command = pwreset(&dir);
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token-generator",
        "numeric",
        "--token-min-number",
        "1",
        "--token-max-number",
        "2",
    ]);
    let (ok, stderr) = run_bounded(command);
    assert!(!ok && stderr.contains("holds 2 codes; at least 10000"), "{stderr}");
}

#[test]
fn a_database_url_is_never_echoed_with_its_password() {
    let dir = TempDir::new().unwrap();
    let urls = [
        // Unparseable port, unparseable host, an unsupported scheme, and nobody listening.
        "postgres://u:SECRETPW1@127.0.0.1:99999/db",
        "postgres://u:SECRETPW2@[::1/db",
        "mysql://u:SECRETPW3@127.0.0.1/db",
        "postgres://u:SECRETPW4@127.0.0.1:1/db?password=SECRETPW5",
    ];
    for url in urls {
        for command in ["migrate", "purge"] {
            let (ok, stderr) = run_bounded({
                let mut c = pwreset(&dir);
                c.arg(command).env("PWRESET_DATABASE_URL", url);
                c
            });
            assert!(!ok, "{command} {url}");
            assert!(stderr.contains("database"), "{stderr}");
            assert!(!stderr.contains("SECRETPW"), "{command}: the password is printed: {stderr}");
        }
    }
}
