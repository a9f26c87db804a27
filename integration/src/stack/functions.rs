//! Every function of the template, as its real binary under the local Runtime API, with the
//! environment the template gives it: literals as they are, the rest from the stack's parts.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use super::{Bus, Part, StackOptions};
use crate::moto::MotoServer;
use crate::router::{FunctionDef, TemplateModel, TemplateValue};
use crate::runtime_api::LocalFunction;

/// What a function's environment is made of.
pub struct Environment<'a> {
    pub moto: &'a MotoServer,
    pub bus: &'a Bus,
    pub org: String,
    pub parts: &'a [&'a dyn Part],
}

pub async fn spawn(
    model: &TemplateModel,
    options: &StackOptions,
    environment: &Environment<'_>,
) -> Result<BTreeMap<String, LocalFunction>> {
    // The layer at /opt in Lambda is infra/config here.
    let config_dir = options
        .manifest
        .parent()
        .map(std::path::Path::to_path_buf)
        .context("the manifest has no parent directory")?;
    let mut functions = BTreeMap::new();
    for function in model.functions.values() {
        let binary = options.bin_dir.join(&function.binary);
        if !binary.exists() {
            bail!(
                "{} not found: build the functions first (`cargo build --workspace --bins`)",
                binary.display()
            );
        }
        let mut env = environment.moto.function_env();
        env.push(("KEYWARD_EVENT_BUS".into(), environment.bus.name.clone()));
        for (var, value) in &function.env {
            let value = match (var.as_str(), value) {
                ("KEYWARD_CONFIG_DIR", _) => environment
                    .parts
                    .iter()
                    .find_map(|p| p.env("KEYWARD_CONFIG_DIR"))
                    .unwrap_or_else(|| config_dir.display().to_string()),
                (_, TemplateValue::Literal(literal)) => literal.clone(),
                ("KEYWARD_EVENT_BUS", _) => continue,
                (var, reference) => environment.value(function, var, reference)?,
            };
            env.push((var.clone(), value));
        }
        let log = options.log_dir.join(format!("{}.log", function.binary));
        let local = LocalFunction::spawn(&function.binary, &binary, &env, &log).await?;
        functions.insert(function.logical_id.clone(), local);
    }
    Ok(functions)
}

impl Environment<'_> {
    /// A template parameter's value: the secret prefix, or what one of the parts knows.
    fn value(
        &self,
        function: &FunctionDef,
        var: &str,
        reference: &TemplateValue,
    ) -> Result<String> {
        if var == "KEYWARD_SECRET_PREFIX" {
            // The template's Environment parameter at its default, as the router resolves the
            // rules' patterns.
            return Ok(format!("/{}/dev/", self.org));
        }
        match self.parts.iter().find_map(|part| part.env(var)) {
            Some(value) => Ok(value),
            None => bail!(
                "the local stack does not know how to provide {var} ({reference:?}) for {}",
                function.logical_id
            ),
        }
    }
}
