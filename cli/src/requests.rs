//! `keyward request new`: a request for a new governed secret is one manifest document
//! (`request-<service>-<name>.yaml` beside the manifest), validated against the manifest and
//! `enums.yaml` before it is written. Merging it makes it part of the manifest.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use keyward_shared::manifest::{
    EnvironmentsDecl, KubernetesDecl, Manifest, ManifestError, RotationDecl, SecretDecl, VercelDecl,
};

#[derive(Args, Debug, Clone, Default)]
pub struct NewRequest {
    /// The manifest directory; the request file is written there.
    #[arg(long, default_value = "infra/config/manifest")]
    pub manifest: PathBuf,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// A secret type from enums.yaml.
    #[arg(long = "type")]
    pub secret_type: Option<String>,
    /// A domain from enums.yaml.
    #[arg(long)]
    pub domain: Option<String>,
    /// An owner from enums.yaml.
    #[arg(long)]
    pub owner: Option<String>,
    /// public, internal, confidential or restricted.
    #[arg(long)]
    pub classification: Option<String>,
    /// A rotation strategy from enums.yaml.
    #[arg(long)]
    pub rotation: Option<String>,
    /// Days between rotations (1 to 90).
    #[arg(long)]
    pub rotation_days: Option<u32>,
    /// Generated password length.
    #[arg(long)]
    pub length: Option<u32>,
    /// Comma-separated environments (e.g. dev,staging,prod).
    #[arg(long, value_delimiter = ',')]
    pub environments: Vec<String>,
    /// Comma-separated replica regions.
    #[arg(long, value_delimiter = ',')]
    pub replicas: Vec<String>,
    /// Comma-separated IAM principal ARNs allowed to read the value.
    #[arg(long, value_delimiter = ',')]
    pub readers: Vec<String>,
    /// Vercel project (id or name); with --vercel-targets and --vercel-key.
    #[arg(long)]
    pub vercel_project: Option<String>,
    #[arg(long)]
    pub vercel_team: Option<String>,
    /// Comma-separated Vercel targets (production, preview, development, custom slugs).
    #[arg(long, value_delimiter = ',')]
    pub vercel_targets: Vec<String>,
    #[arg(long)]
    pub vercel_key: Option<String>,
    /// Kubernetes namespace for an ExternalSecret projection.
    #[arg(long)]
    pub k8s_namespace: Option<String>,
    /// Print the request instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("missing {}: pass them as flags (or run on a terminal to be asked)", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("the request is not valid:\n{0}")]
    Invalid(ManifestError),
    #[error("{0}")]
    Io(String),
}

/// The fields a request cannot do without, with their flag names.
fn missing(request: &NewRequest) -> Vec<&'static str> {
    let mut out = Vec::new();
    let checks: [(&'static str, bool); 9] = [
        ("--service", request.service.is_none()),
        ("--name", request.name.is_none()),
        ("--type", request.secret_type.is_none()),
        ("--domain", request.domain.is_none()),
        ("--owner", request.owner.is_none()),
        ("--classification", request.classification.is_none()),
        ("--rotation", request.rotation.is_none()),
        ("--rotation-days", request.rotation_days.is_none()),
        ("--environments", request.environments.is_empty()),
    ];
    for (flag, absent) in checks {
        if absent {
            out.push(flag);
        }
    }
    out
}

/// Asks for each missing field on the terminal, offering the values enums.yaml allows.
pub fn prompt_missing(request: &mut NewRequest, manifest: &Manifest) -> Result<(), RequestError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(());
    }
    let mut lines = stdin.lock().lines();
    let mut ask = |label: &str, choices: Vec<String>| -> Result<String, RequestError> {
        let hint = if choices.is_empty() {
            String::new()
        } else {
            format!(" [{}]", choices.join(", "))
        };
        print!("{label}{hint}: ");
        std::io::stdout()
            .flush()
            .map_err(|e| RequestError::Io(e.to_string()))?;
        Ok(lines
            .next()
            .transpose()
            .map_err(|e| RequestError::Io(e.to_string()))?
            .unwrap_or_default()
            .trim()
            .to_owned())
    };
    let enums = &manifest.enums;
    if request.service.is_none() {
        request.service = Some(ask("service", vec![])?);
    }
    if request.name.is_none() {
        request.name = Some(ask("name", vec![])?);
    }
    if request.secret_type.is_none() {
        request.secret_type = Some(ask("type", enums.secret_types.keys().cloned().collect())?);
    }
    if request.domain.is_none() {
        request.domain = Some(ask("domain", enums.domains.iter().cloned().collect())?);
    }
    if request.owner.is_none() {
        request.owner = Some(ask("owner", enums.owners.iter().cloned().collect())?);
    }
    if request.classification.is_none() {
        request.classification = Some(ask(
            "classification",
            ["public", "internal", "confidential", "restricted"]
                .map(String::from)
                .to_vec(),
        )?);
    }
    if request.rotation.is_none() {
        request.rotation = Some(ask(
            "rotation",
            enums.rotation.iter().map(|r| r.to_string()).collect(),
        )?);
    }
    if request.rotation_days.is_none() {
        request.rotation_days = ask("rotation days (1-90)", vec![])?.parse().ok();
    }
    if request.environments.is_empty() {
        request.environments = ask(
            "environments (comma-separated)",
            manifest
                .environments
                .iter()
                .map(|e| e.to_string())
                .collect(),
        )?
        .split(',')
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    }
    Ok(())
}

/// The manifest document a request becomes.
pub fn request_document(request: &NewRequest) -> Result<String, RequestError> {
    let absent = missing(request);
    if !absent.is_empty() {
        return Err(RequestError::Missing(absent));
    }
    let classification = serde_yaml_ng::from_str(
        request.classification.as_deref().unwrap_or_default(),
    )
    .map_err(|_| {
        RequestError::Io(format!(
            "--classification `{}` is not public, internal, confidential or restricted",
            request.classification.as_deref().unwrap_or_default()
        ))
    })?;
    let vercel = request.vercel_project.as_ref().map(|project| VercelDecl {
        project: project.clone(),
        team: request.vercel_team.clone(),
        targets: request.vercel_targets.clone(),
        branch: None,
        key: request.vercel_key.clone(),
        env_map: None,
        orphans: None,
        on_edit: None,
        // Never from a request: a person writes it into the declaration, in review.
        allow_restricted: None,
    });
    let decl = SecretDecl {
        service: request.service.clone().unwrap_or_default(),
        name: request.name.clone().unwrap_or_default(),
        description: request.description.clone(),
        secret_type: request.secret_type.clone().unwrap_or_default(),
        domain: request.domain.clone().unwrap_or_default(),
        owner: request.owner.clone().unwrap_or_default(),
        classification,
        rotation: RotationDecl {
            strategy: request.rotation.clone(),
            days: request.rotation_days,
            length: request.length,
            ..RotationDecl::default()
        },
        replicas: request.replicas.clone(),
        readers: request.readers.clone(),
        // Never from a request, as allow_restricted: CI access is decided in review.
        ci_read: false,
        vercel,
        kubernetes: request
            .k8s_namespace
            .as_ref()
            .map(|namespace| KubernetesDecl {
                namespace: namespace.clone(),
                secret_name: None,
                refresh_interval: None,
                properties: Vec::new(),
            }),
        environments: EnvironmentsDecl::List(request.environments.clone()),
    };
    // A Mapping keeps insertion order: `version` first, as in every manifest file.
    let mut document = serde_yaml_ng::Mapping::new();
    document.insert("version".into(), serde_yaml_ng::Value::from(1));
    document.insert(
        "secrets".into(),
        serde_yaml_ng::to_value(vec![decl]).map_err(|e| RequestError::Io(e.to_string()))?,
    );
    let yaml = serde_yaml_ng::to_string(&document).map_err(|e| RequestError::Io(e.to_string()))?;
    Ok(format!(
        "# yaml-language-server: $schema=../../../schemas/manifest.schema.json\n# A request for a new secret, written by `keyward request new`.\n{yaml}"
    ))
}

/// (file name, text) pairs: the manifest documents, and `enums.yaml` apart.
pub type ManifestFiles = (Vec<(String, String)>, (String, String));

/// The manifest's files as (name, text), enums last.
pub fn manifest_files(dir: &Path) -> Result<ManifestFiles, RequestError> {
    let mut documents = Vec::new();
    let mut enums = None;
    let entries =
        std::fs::read_dir(dir).map_err(|e| RequestError::Io(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry.map_err(|e| RequestError::Io(e.to_string()))?.path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            continue;
        }
        let name = path.display().to_string();
        let text =
            std::fs::read_to_string(&path).map_err(|e| RequestError::Io(format!("{name}: {e}")))?;
        if path.file_name().and_then(|n| n.to_str()) == Some(keyward_shared::manifest::ENUMS_FILE) {
            enums = Some((name, text));
        } else {
            documents.push((name, text));
        }
    }
    documents.sort();
    let enums =
        enums.ok_or_else(|| RequestError::Io(format!("no enums.yaml in {}", dir.display())))?;
    Ok((documents, enums))
}

/// Validates the request with the manifest and writes it; returns the path (or, with
/// `dry_run`, the document).
pub fn write_request(request: &NewRequest) -> Result<(PathBuf, String), RequestError> {
    let document = request_document(request)?;
    let (mut documents, enums) = manifest_files(&request.manifest)?;
    let file_name = format!(
        "request-{}-{}.yaml",
        request.service.as_deref().unwrap_or_default(),
        request.name.as_deref().unwrap_or_default()
    );
    let path = request.manifest.join(&file_name);
    if path.exists() {
        return Err(RequestError::Io(format!(
            "{} already exists",
            path.display()
        )));
    }
    documents.push((path.display().to_string(), document.clone()));
    let sources: Vec<(&str, &str)> = documents
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    Manifest::from_sources(&sources, (enums.0.as_str(), enums.1.as_str()))
        .map_err(RequestError::Invalid)?;
    if !request.dry_run {
        std::fs::write(&path, &document)
            .map_err(|e| RequestError::Io(format!("{}: {e}", path.display())))?;
    }
    Ok((path, document))
}
