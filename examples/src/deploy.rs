//! **Seed Scenario 3: multi-service deployment.**
//!
//! The JavaScript guide deploys `api`, `web` and `worker` at once with `ctx.parallel.all` and
//! reports `success = every deployment succeeded`. Here the services come from the input, so the
//! fan-out is a `ctx.map`, in two phases:
//!
//! 1. **build** every service at once: copy `src_dir/<service>` into `out_dir/build/<service>`
//!    after validating its `service.json`, and write a `MANIFEST.json` with every file's size
//!    and FNV-1a checksum;
//! 2. **deploy** every built service at once, each item a *sequence* of two tasks: copy the
//!    build into `out_dir/<env>/<service>` (staged, then swapped in), then a health check that
//!    verifies the deployed files against the manifest.
//!
//! Both phases `settle()`, so one broken service is reported while the others still ship.
//! With `not_before` (seconds since the epoch) the deployment waits for a maintenance window:
//! a durable sleep, so a window hours away suspends the run and a later `resume` (or a
//! `resume --wait` worker) deploys once the window opens.
//! Between them, a `production` (or `prod`) deployment stops at a breakpoint until a person
//! approves or rejects it (`approve <run> approve-production#0 --feedback ..`, then `resume`).
//!
//! Quick start: `examples/data/deploy-input.json` deploys the sample services of
//! `examples/data/services` into `/tmp/minder-deploy/staging`.

use crate::support::{fnv1a64, path, replace_dir_with_copy, walk_files};
use minder::prelude::*;
use std::path::Path;

/// The name of the manifest file inside a build or a deployment.
pub const MANIFEST: &str = "MANIFEST.json";

fn default_services() -> Vec<String> {
    vec!["api".into(), "web".into(), "worker".into()]
}

/// What to deploy where.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployInput {
    /// The directory holding one source directory per service.
    pub src_dir: String,
    /// Builds go to `out_dir/build/<service>`, deployments to `out_dir/<env>/<service>`.
    pub out_dir: String,
    /// The environment, e.g. `staging` or `prod`.
    pub env: String,
    /// The services to build and deploy (default `api`, `web`, `worker`).
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    /// The start of the maintenance window, in seconds since the Unix epoch: the builds (and
    /// a production approval) happen at once, the deployment not before this time. A durable
    /// sleep: a window hours away suspends the run until then.
    #[serde(default)]
    pub not_before: Option<u64>,
}

/// One file of a build.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestFile {
    /// Path relative to the service directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// FNV-1a 64-bit checksum.
    pub fnv1a64: String,
}

/// What a build produced: written as `MANIFEST.json` next to the built files.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The service.
    pub service: String,
    /// A checksum over all files' paths and checksums: the release version.
    pub version: String,
    /// The files, sorted by path (the manifest itself is not listed).
    pub files: Vec<ManifestFile>,
}

/// Where a service was deployed.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// The service.
    pub service: String,
    /// The environment.
    pub env: String,
    /// The deployed directory.
    pub path: String,
    /// The version (from the manifest) that was deployed.
    pub version: String,
}

/// The verdict of a health check.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// The service.
    pub service: String,
    /// Whether every file of the manifest is deployed intact and nothing else is there.
    pub healthy: bool,
    /// Files checked.
    pub checked: usize,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
}

/// The outcome for one service.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceResult {
    /// The service.
    pub service: String,
    /// Whether the build succeeded.
    pub built: bool,
    /// Whether the build was copied into the environment.
    pub deployed: bool,
    /// Whether the health check passed.
    pub healthy: bool,
    /// The version built, if built.
    pub version: Option<String>,
    /// Files in the build.
    pub files: usize,
    /// Why the build or deployment failed, or what the health check found.
    pub problems: Vec<String>,
}

/// The environments that need a person's approval before anything is deployed.
pub const GUARDED_ENVS: &[&str] = &["production", "prod"];

/// The result of the deployment.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct DeployReport {
    /// The environment.
    pub env: String,
    /// For a guarded environment, the person's decision and feedback
    /// (`approved: ...` / `rejected: ...`).
    #[serde(default)]
    pub approval: Option<String>,
    /// Whether every service is deployed and healthy.
    pub success: bool,
    /// One entry per service, in input order.
    pub services: Vec<ServiceResult>,
}

fn manifest_of(service: &str, dir: &Path) -> std::io::Result<Manifest> {
    let mut files = Vec::new();
    for rel in walk_files(dir)? {
        if rel == MANIFEST {
            continue;
        }
        let bytes = std::fs::read(dir.join(&rel))?;
        files.push(ManifestFile {
            path: rel,
            bytes: bytes.len() as u64,
            fnv1a64: fnv1a64(&bytes),
        });
    }
    let listing: String = files
        .iter()
        .map(|f| format!("{} {} {}\n", f.fnv1a64, f.bytes, f.path))
        .collect();
    Ok(Manifest {
        service: service.to_string(),
        version: fnv1a64(listing.as_bytes()),
        files,
    })
}

/// Where the sources are and where the output goes.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Dirs {
    /// One source directory per service.
    pub src_dir: String,
    /// Builds go to `out_dir/build/<service>`.
    pub out_dir: String,
}

/// Builds one service: validates `src_dir/<service>/service.json` (a JSON object whose `name`
/// is the service), copies the sources into `out_dir/build/<service>` and writes the manifest.
#[task(timeout = "2m")]
pub async fn build_service(dirs: Dirs, service: String) -> Result<Manifest, TaskError> {
    let src = path(&dirs.src_dir).join(&service);
    let config_path = src.join("service.json");
    let config = std::fs::read_to_string(&config_path).map_err(|e| {
        TaskError::new(format!(
            "{service}: cannot read {}: {e}",
            config_path.display()
        ))
    })?;
    let config: serde_json::Value = serde_json::from_str(&config)
        .map_err(|e| TaskError::new(format!("{service}: service.json is not valid JSON: {e}")))?;
    match config.get("name").and_then(|n| n.as_str()) {
        Some(name) if name == service => {}
        Some(name) => {
            return Err(TaskError::new(format!(
                "{service}: service.json names the service `{name}`"
            )))
        }
        None => {
            return Err(TaskError::new(format!(
                "{service}: service.json has no string field `name`"
            )))
        }
    }
    let build = path(&dirs.out_dir).join("build").join(&service);
    replace_dir_with_copy(&src, &build)?;
    let manifest = manifest_of(&service, &build)?;
    std::fs::write(
        build.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

/// Deploys a built service into `out_dir/<env>/<service>`: copies the build (with its manifest)
/// into a staging directory first and swaps it in, so a failed copy never leaves half a
/// deployment behind.
#[task(timeout = "2m")]
pub async fn deploy_service(
    out_dir: String,
    env: String,
    manifest: Manifest,
) -> Result<Deployment, TaskError> {
    let service = &manifest.service;
    let build = path(&out_dir).join("build").join(service);
    let env_dir = path(&out_dir).join(&env);
    let staging = env_dir.join(format!(".{service}.staging"));
    let target = env_dir.join(service);
    replace_dir_with_copy(&build, &staging)?;
    if target.exists() {
        std::fs::remove_dir_all(&target)?;
    }
    std::fs::rename(&staging, &target)?;
    Ok(Deployment {
        service: service.clone(),
        env,
        path: target.to_string_lossy().into_owned(),
        version: manifest.version,
    })
}

/// Checks a deployment against its manifest: every listed file present with the recorded size
/// and checksum, no unlisted file, and the manifest of the expected version.
#[task(timeout = "1m")]
pub async fn health_check(deployment: Deployment) -> Result<Health, TaskError> {
    let dir = path(&deployment.path);
    let service = deployment.service.clone();
    let text = std::fs::read_to_string(dir.join(MANIFEST))
        .map_err(|e| TaskError::new(format!("{service}: no readable {MANIFEST}: {e}")))?;
    let manifest: Manifest = serde_json::from_str(&text)?;
    let mut problems = Vec::new();
    if manifest.version != deployment.version {
        problems.push(format!(
            "deployed version {} is not the built version {}",
            manifest.version, deployment.version
        ));
    }
    for file in &manifest.files {
        match std::fs::read(dir.join(&file.path)) {
            Err(e) => problems.push(format!("{}: {e}", file.path)),
            Ok(bytes) if bytes.len() as u64 != file.bytes || fnv1a64(&bytes) != file.fnv1a64 => {
                problems.push(format!("{}: content differs from the manifest", file.path))
            }
            Ok(_) => {}
        }
    }
    for present in walk_files(&dir)? {
        if present != MANIFEST && !manifest.files.iter().any(|f| f.path == present) {
            problems.push(format!("{present}: not in the manifest"));
        }
    }
    Ok(Health {
        service,
        healthy: problems.is_empty(),
        checked: manifest.files.len(),
        problems,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Builds every service at once, then deploys and health-checks every built one at once.
#[process(name = "deploy-services")]
pub async fn deploy_services(ctx: &Ctx, input: DeployInput) -> Result<DeployReport, ProcessError> {
    if !valid_name(&input.env) || input.env == "build" {
        return Err(ProcessError::msg(format!(
            "invalid env `{}`: use letters, digits, `-`, `_` (and not `build`)",
            input.env
        )));
    }
    if input.services.is_empty() {
        return Err(ProcessError::msg("no services to deploy"));
    }
    for (i, service) in input.services.iter().enumerate() {
        if !valid_name(service) {
            return Err(ProcessError::msg(format!(
                "invalid service name `{service}`"
            )));
        }
        if input.services[..i].contains(service) {
            return Err(ProcessError::msg(format!(
                "service `{service}` is listed twice"
            )));
        }
    }

    // Phase 1: build all services at once.
    let dirs = Dirs {
        src_dir: input.src_dir.clone(),
        out_dir: input.out_dir.clone(),
    };
    let services = input.services.clone();
    let builds = ctx
        .map("build", services, |s| build_service(dirs.clone(), s))
        .settle()
        .await;
    let manifests: Vec<Manifest> = builds.iter().filter_map(|b| b.clone().ok()).collect();
    ctx.log(format!(
        "built {}/{} services",
        manifests.len(),
        input.services.len()
    ));

    // Production waits for a person: `approve` / `reject` the breakpoint, then `resume`.
    let mut approval = None;
    if GUARDED_ENVS.contains(&input.env.as_str()) {
        let versions: Vec<String> = manifests
            .iter()
            .map(|m| format!("{} {}", m.service, m.version))
            .collect();
        let decision = ctx
            .breakpoint(
                "approve-production",
                format!("deploy {} to {}?", versions.join(", "), input.env),
            )
            .await;
        let feedback = decision.feedback().unwrap_or("no feedback").to_string();
        if !decision.is_approved() {
            ctx.log(format!("deployment to {} rejected: {feedback}", input.env));
            let services = input
                .services
                .iter()
                .zip(builds)
                .map(|(service, build)| ServiceResult {
                    service: service.clone(),
                    built: build.is_ok(),
                    deployed: false,
                    healthy: false,
                    version: build.as_ref().ok().map(|m| m.version.clone()),
                    files: build.as_ref().map(|m| m.files.len()).unwrap_or(0),
                    problems: vec![format!("not deployed: rejected ({feedback})")],
                })
                .collect();
            return Ok(DeployReport {
                env: input.env,
                approval: Some(format!("rejected: {feedback}")),
                success: false,
                services,
            });
        }
        approval = Some(format!("approved: {feedback}"));
    }

    // The maintenance window: wait for it durably (a long wait suspends the run).
    if let Some(start) = input.not_before {
        let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(start);
        if start > ctx.now() {
            ctx.log("waiting for the maintenance window");
        }
        ctx.sleep_until(start).await;
    }

    // Phase 2: deploy every built service at once; each item is deploy, then health check.
    let (out, env) = (input.out_dir.clone(), input.env.clone());
    let deploys = ctx
        .map("deploy", manifests, |manifest| {
            let (out, env) = (out.clone(), env.clone());
            async move {
                let deployment = deploy_service(out, env, manifest).await?;
                health_check(deployment).await
            }
        })
        .settle()
        .await;

    let mut deploys = deploys.into_iter();
    let mut services = Vec::new();
    for (service, build) in input.services.iter().zip(builds) {
        let mut result = ServiceResult {
            service: service.clone(),
            built: false,
            deployed: false,
            healthy: false,
            version: None,
            files: 0,
            problems: Vec::new(),
        };
        match build {
            Err(e) => result.problems.push(format!("build failed: {e}")),
            Ok(manifest) => {
                result.built = true;
                result.version = Some(manifest.version);
                result.files = manifest.files.len();
                // Deploy results come in the order of the built manifests.
                match deploys.next() {
                    Some(Ok(health)) => {
                        result.deployed = true;
                        result.healthy = health.healthy;
                        result.problems = health.problems;
                    }
                    Some(Err(e)) => result.problems.push(format!("deploy failed: {e}")),
                    None => result.problems.push("not deployed".into()),
                }
            }
        }
        services.push(result);
    }
    let success = services.iter().all(|s| s.healthy);
    let healthy = services.iter().filter(|s| s.healthy).count();
    ctx.log(format!(
        "{healthy}/{} services healthy in {}",
        services.len(),
        input.env
    ));
    Ok(DeployReport {
        env: input.env,
        approval,
        success,
        services,
    })
}
