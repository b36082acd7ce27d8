//! The Kubernetes manifests agree with the binary: ports, probe service names and the
//! environment variables it reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use clap::CommandFactory;
use pwreset::app::LIVENESS_SERVICE_NAME;
use pwreset::cli::Cli;
use yaml_rust2::{Yaml, YamlLoader};

fn load(file: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(format!("{}/deploy/kubernetes/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    YamlLoader::load_from_str(&text).unwrap()
}

/// Every `PWRESET_*` variable the binary reads.
fn known_env() -> BTreeSet<String> {
    let command = Cli::command();
    let mut names = BTreeSet::new();
    let mut commands = vec![&command];
    commands.extend(command.get_subcommands());
    for c in commands {
        for arg in c.get_arguments() {
            if let Some(env) = arg.get_env() {
                names.insert(env.to_string_lossy().into_owned());
            }
        }
    }
    names
}

fn container(deployment: &Yaml) -> &Yaml {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn deployment_env_names_are_the_binarys() {
    let known = known_env();
    assert!(known.contains("PWRESET_LISTEN") && known.contains("PWRESET_METRICS_LISTEN"));
    let deployment = &load("deployment.yaml")[0];
    for var in container(deployment)["env"].as_vec().unwrap() {
        let name = var["name"].as_str().unwrap();
        assert!(known.contains(name), "{name} is not read by pwreset");
    }
    let secret = &load("secret.yaml")[0];
    for (name, _) in secret["stringData"].as_hash().unwrap() {
        let name = name.as_str().unwrap();
        assert!(known.contains(name), "{name} in the Secret is not read by pwreset");
    }
}

#[test]
fn ports_and_probes_agree_with_the_listeners() {
    let deployment = &load("deployment.yaml")[0];
    let c = container(deployment);
    let env = |name: &str| {
        c["env"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .map(|v| v["value"].as_str().unwrap().to_owned())
    };
    let port_of = |addr: String| addr.rsplit(':').next().unwrap().parse::<i64>().unwrap();
    let grpc_port = port_of(env("PWRESET_LISTEN").unwrap());
    let metrics_port = port_of(env("PWRESET_METRICS_LISTEN").unwrap());
    assert_eq!(grpc_port, 50051, "the binary's default port");
    let ports: Vec<(String, i64)> = c["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["containerPort"].as_i64().unwrap()))
        .collect();
    assert!(ports.contains(&("grpc".into(), grpc_port)));
    assert!(ports.contains(&("metrics".into(), metrics_port)));

    assert_eq!(c["readinessProbe"]["grpc"]["port"].as_i64(), Some(grpc_port));
    assert_eq!(c["readinessProbe"]["grpc"]["service"].as_str(), Some(""), "readiness is the overall status");
    assert_eq!(c["livenessProbe"]["grpc"]["port"].as_i64(), Some(grpc_port));
    assert_eq!(c["livenessProbe"]["grpc"]["service"].as_str(), Some(LIVENESS_SERVICE_NAME));

    let service = &load("service.yaml")[0];
    let service_ports = service["spec"]["ports"].as_vec().unwrap();
    assert!(service_ports.iter().any(|p| p["name"].as_str() == Some("grpc") && p["port"].as_i64() == Some(grpc_port)));
    for p in service_ports {
        let target = p["targetPort"].as_str().unwrap();
        assert!(ports.iter().any(|(name, _)| name == target), "targetPort {target} is not a container port");
    }
}

#[test]
fn migration_job_runs_migrate_and_replicas_do_not() {
    let job = &load("migration-job.yaml")[0];
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"].as_vec().unwrap();
    assert_eq!(args[0].as_str(), Some("migrate"));
    let deployment = &load("deployment.yaml")[0];
    let env = container(deployment)["env"].as_vec().unwrap();
    assert!(
        env.iter().any(|v| v["name"].as_str() == Some("PWRESET_NO_MIGRATE") && v["value"].as_str() == Some("true"))
    );
}

#[test]
fn the_image_ships_the_service_and_the_notifier() {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    for binary in ["pwreset", "pwreset-notify"] {
        assert!(dockerfile.contains(&format!("--bin {binary}")), "{binary} is built");
        assert!(dockerfile.contains(&format!("/usr/local/bin/{binary}")), "{binary} is installed");
    }
}
