//! The deployment files in `deploy/` stay true to the worker they run: the
//! Kubernetes manifest parses, and its image, command and environment name
//! exactly what `examples/remote_worker.rs` (built by `deploy/Dockerfile`)
//! reads; so does the systemd unit. Then the real worker binary, given the
//! manifest's environment (with its files and the host's address moved
//! onto this machine), joins a host and serves jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ipc2_host::workerset::WorkerSet;
use ipc2_tls::env::{
    ENV_HOST, ENV_SERVER_NAME, ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY, WORKER_VARIABLES,
};
use ipc2_tls::{HostTls, TlsListener};
use test_common::HostMessage;
use test_common::binaries::{example_binary, workspace_root};
use test_common::pools::within;
use test_common::remote::RemoteWorker;
use test_common::tls::TestPki;
use tokio::net::UnixListener;
use yaml_rust2::{Yaml, YamlLoader};

fn read(path: &str) -> String {
    let path = workspace_root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What `deploy/Dockerfile` builds and where it installs it.
struct Image {
    example: String,
    installed: String,
}

fn dockerfile() -> Image {
    let text = read("deploy/Dockerfile");
    let build = text
        .lines()
        .find(|line| line.starts_with("RUN cargo build"))
        .expect("the Dockerfile builds with cargo");
    let example = build
        .split_whitespace()
        .skip_while(|word| *word != "--example")
        .nth(1)
        .expect("the Dockerfile builds an example")
        .to_owned();
    let copy = text
        .lines()
        .find(|line| line.starts_with("COPY --from=build"))
        .expect("the Dockerfile copies the binary");
    let words: Vec<&str> = copy.split_whitespace().collect();
    assert_eq!(words[2], format!("/src/target/release/examples/{example}"));
    let installed = words[3].to_owned();
    assert!(
        text.contains(&format!("ENTRYPOINT [\"{installed}\"]")),
        "the entrypoint is the installed binary"
    );
    assert!(
        workspace_root()
            .join(format!("examples/{example}.rs"))
            .exists(),
        "the Dockerfile builds an example that exists"
    );
    Image { example, installed }
}

/// The documents of the Kubernetes manifest, by kind.
fn manifest() -> BTreeMap<String, Yaml> {
    let documents = YamlLoader::load_from_str(&read("deploy/kubernetes/workers.yaml"))
        .expect("the manifest is valid YAML");
    documents
        .into_iter()
        .map(|doc| {
            (
                doc["kind"]
                    .as_str()
                    .expect("every document has a kind")
                    .to_owned(),
                doc,
            )
        })
        .collect()
}

fn text(yaml: &Yaml) -> &str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("expected text, found {yaml:?}"))
}

/// The worker container's environment, as the manifest sets it.
fn manifest_env(container: &Yaml) -> BTreeMap<String, String> {
    container["env"]
        .as_vec()
        .expect("the container sets an environment")
        .iter()
        .map(|var| {
            (
                text(&var["name"]).to_owned(),
                text(&var["value"]).to_owned(),
            )
        })
        .collect()
}

fn names(keys: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    keys.into_iter().collect()
}

fn worker_variables() -> BTreeSet<String> {
    WORKER_VARIABLES
        .iter()
        .map(|name| name.to_string())
        .collect()
}

#[test]
fn the_kubernetes_manifest_names_the_workers_real_image_command_and_environment() {
    let image = dockerfile();
    let docs = manifest();
    let deployment = &docs["Deployment"];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        text(&container["image"]),
        format!("ipc2-remote-worker:{}", env!("CARGO_PKG_VERSION")),
        "the image is tagged with this version"
    );
    let command: Vec<&str> = container["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert_eq!(command, [image.installed.as_str()]);
    let env = manifest_env(container);
    assert_eq!(names(env.keys().cloned()), worker_variables());

    // The certificate files are in the mounted Secret, under its keys.
    let mount = &container["volumeMounts"][0];
    let mount_path = Path::new(text(&mount["mountPath"]));
    let volume = &deployment["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(text(&volume["name"]), text(&mount["name"]));
    let secret = &docs["Secret"];
    assert_eq!(
        text(&volume["secret"]["secretName"]),
        text(&secret["metadata"]["name"])
    );
    let keys = secret["stringData"].as_hash().unwrap();
    for variable in [ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY] {
        let path = Path::new(&env[variable]);
        assert_eq!(path.parent(), Some(mount_path), "{variable}");
        let file = path.file_name().unwrap().to_str().unwrap();
        assert!(
            keys.contains_key(&Yaml::String(file.into())),
            "Secret lacks {file}"
        );
    }

    // The workers dial the host's Service, and check its certificate's name.
    let service = &docs["Service"];
    let (host, port) = env[ENV_HOST].rsplit_once(':').unwrap();
    assert!(host.starts_with(&format!("{}.", text(&service["metadata"]["name"]))));
    assert_eq!(
        port.parse::<i64>().ok(),
        service["spec"]["ports"][0]["port"].as_i64()
    );
    assert_eq!(env[ENV_SERVER_NAME], host);
    println!(
        "image {} (example {}), command {command:?}, env {env:?}",
        text(&container["image"]),
        image.example
    );
}

#[test]
fn the_systemd_unit_names_the_workers_real_binary_and_environment() {
    let image = dockerfile();
    let unit = read("deploy/systemd/ipc2-remote-worker.service");
    let service: Vec<&str> = unit
        .lines()
        .skip_while(|line| line.trim() != "[Service]")
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .collect();
    let value = |key: &str| {
        service
            .iter()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit sets no {key}"))
    };
    assert_eq!(value("ExecStart"), image.installed);
    assert_eq!(value("Restart"), "always");
    let env: BTreeMap<String, String> = service
        .iter()
        .filter_map(|line| line.strip_prefix("Environment="))
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("KEY=value");
            (key.to_owned(), value.to_owned())
        })
        .collect();
    assert_eq!(names(env.keys().cloned()), worker_variables());
    let (host, _) = env[ENV_HOST].rsplit_once(':').unwrap();
    assert_eq!(env[ENV_SERVER_NAME], host);
}

#[tokio::test]
async fn the_worker_joins_a_host_with_the_manifests_environment() {
    within(120, async {
        let docs = manifest();
        let container = &docs["Deployment"]["spec"]["template"]["spec"]["containers"][0];
        let mut env = manifest_env(container);
        let pki = TestPki::new();
        // The host's certificate carries the name the manifest expects.
        let host_tls = HostTls::new(&pki.identity(&env[ENV_SERVER_NAME]), &[]).unwrap();
        let listener = TlsListener::bind("127.0.0.1:0", host_tls).await.unwrap();
        // This machine is not the cluster: the Service's address becomes the
        // listener's, and the Secret's files land in a directory of ours.
        env.insert(ENV_HOST.into(), listener.local_addr().unwrap().to_string());
        let secret_dir = std::env::temp_dir().join(format!("ipc2-deploy-{}", std::process::id()));
        std::fs::create_dir_all(&secret_dir).unwrap();
        let identity = pki.identity("worker-1.test");
        for (variable, pem) in [
            (ENV_TLS_CA, &identity.ca),
            (ENV_TLS_CERT, &identity.cert),
            (ENV_TLS_KEY, &identity.key),
        ] {
            let file: PathBuf = secret_dir.join(Path::new(&env[variable]).file_name().unwrap());
            std::fs::write(&file, pem).unwrap();
            env.insert(variable.into(), file.display().to_string());
        }
        let worker = RemoteWorker::spawn(&example_binary("remote_worker"), &env, &[], "worker-1");
        let workers: WorkerSet<UnixListener, u32, HostMessage> = WorkerSet::builder()
            .worker_count(0)
            .remote_workers(listener, 1)
            .wait_for_remote_workers(1)
            .finish()
            .await
            .unwrap();
        assert_eq!(workers.send(HostMessage::Add(6, 7)).await.unwrap(), 13);
        assert_eq!(workers.send(HostMessage::Sub(9, 4)).await.unwrap(), 5);
        let peer = workers.stats().workers[0].peer.clone().unwrap();
        println!("the deployed worker joined as {peer}");
        assert_eq!(peer.name.as_deref(), Some("worker-1.test"));
        drop(worker);
        let _ = std::fs::remove_dir_all(&secret_dir);
    })
    .await;
}
