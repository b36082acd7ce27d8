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

#[test]
fn help_never_shows_the_values_of_secret_settings() {
    let dir = TempDir::new().unwrap();
    let out = pwreset(&dir)
        .arg("--help")
        .env("PWRESET_DATABASE_URL", "postgres://pwreset:hunter2-db-secret@db.internal/pwreset")
        .env("PWRESET_SECRET_KEY", "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXktMDA=")
        .env("PWRESET_CALLER_KEYS", "reset=caller-key-secret-0123456789")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--database-url"), "{help}");
    for secret in ["hunter2-db-secret", "c2VjcmV0LWtleS1zZWNyZXQta2V5", "caller-key-secret"] {
        assert!(!help.contains(secret), "--help shows {secret}");
    }
}
