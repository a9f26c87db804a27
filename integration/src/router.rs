//! The EventBridge rules of `infra/template.yaml`, matched locally with quamina (a real
//! implementation of EventBridge event patterns), so the local stack routes events exactly as the
//! deployed rules would.
//!
//! Read from the template: each `AWS::Serverless::Function`'s `Metadata.BuildProperties.Binary`,
//! its `Environment.Variables` names, and its `Events` of type `EventBridgeRule` (pattern, bus) and
//! `Schedule`; and each `AWS::Events::Rule` whose targets are functions.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value as Yaml;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("{0}")]
    Shape(String),
    #[error("rule {rule}: pattern rejected by the pattern engine: {message}")]
    Pattern { rule: String, message: String },
}

/// An environment variable's value as the template writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateValue {
    Literal(String),
    /// `!Ref X`, `!GetAtt X.Y`, `!Sub ...`: resolved by the local stack for its own resources.
    Reference(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDef {
    pub logical_id: String,
    pub binary: String,
    pub env: Vec<(String, TemplateValue)>,
}

impl FunctionDef {
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.env.iter().map(|(k, _)| k.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    /// `<FunctionLogicalId>.<EventName>` or the `AWS::Events::Rule` logical id.
    pub id: String,
    pub function: String,
    /// The bus's logical id (from `!Ref`) or name; `None` is the default bus.
    pub bus: Option<String>,
    pub pattern: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleDef {
    pub id: String,
    pub function: String,
    pub expression: String,
}

#[derive(Debug, Clone, Default)]
pub struct TemplateModel {
    pub functions: BTreeMap<String, FunctionDef>,
    pub rules: Vec<RuleDef>,
    pub schedules: Vec<ScheduleDef>,
}

fn get<'a>(value: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    value.as_mapping()?.get(key)
}

fn ref_name(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str().map(str::to_owned),
        _ => get(value, "Ref")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    }
}

/// The logical id a target `Arn: !GetAtt X.Arn` points at.
fn getatt_target(value: &Yaml) -> Option<String> {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == "GetAtt" => match &tagged.value {
            Yaml::String(s) => s.split('.').next().map(str::to_owned),
            Yaml::Sequence(seq) => seq.first().and_then(|v| v.as_str()).map(str::to_owned),
            _ => None,
        },
        _ => get(value, "Fn::GetAtt")
            .and_then(|v| v.as_sequence())
            .and_then(|s| s.first())
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    }
}

fn template_value(value: &Yaml) -> TemplateValue {
    match value {
        Yaml::String(s) => TemplateValue::Literal(s.clone()),
        Yaml::Number(n) => TemplateValue::Literal(n.to_string()),
        Yaml::Bool(b) => TemplateValue::Literal(b.to_string()),
        Yaml::Tagged(t) => TemplateValue::Reference(format!(
            "!{} {}",
            t.tag,
            serde_yaml_ng::to_string(&t.value)
                .unwrap_or_default()
                .trim()
        )),
        other => TemplateValue::Reference(
            serde_yaml_ng::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
    }
}

/// A literal string, or `!Ref Parameter` resolved to the parameter's default.
fn resolve_parameter(doc: &Yaml, value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Tagged(t) if t.tag == "Ref" => {
            let name = t.value.as_str()?;
            get(doc, "Parameters")
                .and_then(|p| get(p, name))
                .and_then(|p| get(p, "Default"))
                .and_then(|d| d.as_str())
                .map(str::to_owned)
        }
        _ => None,
    }
}

/// Pseudo parameters as the local stack's moto account sees them.
fn pseudo_parameter(name: &str) -> Option<&'static str> {
    match name {
        "AWS::Region" => Some(crate::moto::REGION),
        "AWS::AccountId" => Some("123456789012"),
        "AWS::Partition" => Some("aws"),
        _ => None,
    }
}

/// `!Ref P` or `!Sub "...${P}..."` inside a pattern's values, with parameters at their defaults
/// (the values the local stack deploys with).
fn resolve_scalar(
    doc: &Yaml,
    tagged: &serde_yaml_ng::value::TaggedValue,
    at: &str,
) -> Result<String, TemplateError> {
    let parameter = |name: &str| {
        pseudo_parameter(name).map(str::to_owned).or_else(|| {
            get(doc, "Parameters")
                .and_then(|p| get(p, name))
                .and_then(|p| get(p, "Default"))
                .and_then(|d| d.as_str())
                .map(str::to_owned)
        })
    };
    let unresolved = || {
        TemplateError::Shape(format!(
            "{at}: cannot resolve `!{} {:?}` in a pattern",
            tagged.tag, tagged.value
        ))
    };
    match (
        tagged.tag.to_string().trim_start_matches('!'),
        tagged.value.as_str(),
    ) {
        ("Ref", Some(name)) => parameter(name).ok_or_else(unresolved),
        ("Sub", Some(text)) => {
            let mut out = String::new();
            let mut rest = text;
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let end = rest[start..].find('}').ok_or_else(unresolved)? + start;
                out.push_str(&parameter(&rest[start + 2..end]).ok_or_else(unresolved)?);
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            Ok(out)
        }
        _ => Err(unresolved()),
    }
}

fn yaml_to_json(doc: &Yaml, value: &Yaml, at: &str) -> Result<serde_json::Value, TemplateError> {
    fn walk(doc: &Yaml, value: &Yaml, at: &str) -> Result<serde_json::Value, TemplateError> {
        Ok(match value {
            Yaml::Tagged(tagged) => serde_json::Value::String(resolve_scalar(doc, tagged, at)?),
            Yaml::Sequence(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|v| walk(doc, v, at))
                    .collect::<Result<_, _>>()?,
            ),
            Yaml::Mapping(map) => {
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    let key = k.as_str().ok_or_else(|| {
                        TemplateError::Shape(format!("{at}: pattern keys must be strings"))
                    })?;
                    out.insert(key.to_owned(), walk(doc, v, at)?);
                }
                serde_json::Value::Object(out)
            }
            other => serde_json::to_value(other)
                .map_err(|e| TemplateError::Shape(format!("{at}: {e}")))?,
        })
    }
    if matches!(value, Yaml::Tagged(_)) {
        return Err(TemplateError::Shape(format!(
            "{at}: a pattern must be literal YAML, not an intrinsic function"
        )));
    }
    walk(doc, value, at)
}

impl TemplateModel {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let doc: Yaml = serde_yaml_ng::from_str(text)?;
        let resources = get(&doc, "Resources")
            .and_then(|r| r.as_mapping())
            .ok_or_else(|| TemplateError::Shape("the template has no Resources".into()))?;
        let mut model = TemplateModel::default();
        for (id, resource) in resources {
            let Some(id) = id.as_str() else { continue };
            let kind = get(resource, "Type")
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            let props = get(resource, "Properties");
            match (kind, props) {
                ("AWS::Serverless::Function", _) => model.add_function(&doc, id, resource)?,
                ("AWS::Events::Rule", Some(props)) => model.add_events_rule(&doc, id, props)?,
                _ => {}
            }
        }
        // Targets must be functions of this template.
        model
            .rules
            .retain(|r| model.functions.contains_key(&r.function));
        Ok(model)
    }

    /// A function, and the EventBridge rules and schedules its `Events` declare.
    fn add_function(&mut self, doc: &Yaml, id: &str, resource: &Yaml) -> Result<(), TemplateError> {
        let props = get(resource, "Properties");
        let binary = get(resource, "Metadata")
            .and_then(|m| get(m, "BuildProperties"))
            .and_then(|b| get(b, "Binary"))
            .and_then(|b| b.as_str())
            .ok_or_else(|| {
                TemplateError::Shape(format!("{id}: Metadata.BuildProperties.Binary is required"))
            })?;
        let env = props
            .and_then(|p| get(p, "Environment"))
            .and_then(|e| get(e, "Variables"))
            .and_then(|v| v.as_mapping())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), template_value(v))))
                    .collect()
            })
            .unwrap_or_default();
        self.functions.insert(
            id.to_owned(),
            FunctionDef {
                logical_id: id.to_owned(),
                binary: binary.to_owned(),
                env,
            },
        );
        let events = props
            .and_then(|p| get(p, "Events"))
            .and_then(|e| e.as_mapping());
        for (event_name, event) in events.into_iter().flatten() {
            let rule_id = format!("{id}.{}", event_name.as_str().unwrap_or_default());
            self.add_function_event(doc, id, rule_id, event)?;
        }
        Ok(())
    }

    /// An `EventBridgeRule` or `Schedule`/`ScheduleV2` event of a function (others are ignored).
    fn add_function_event(
        &mut self,
        doc: &Yaml,
        function: &str,
        rule_id: String,
        event: &Yaml,
    ) -> Result<(), TemplateError> {
        let event_props = get(event, "Properties");
        match get(event, "Type").and_then(|t| t.as_str()) {
            Some("EventBridgeRule") => {
                let pattern = event_props.and_then(|p| get(p, "Pattern")).ok_or_else(|| {
                    TemplateError::Shape(format!("{rule_id}: Pattern is required"))
                })?;
                self.rules.push(RuleDef {
                    pattern: yaml_to_json(doc, pattern, &rule_id)?,
                    bus: event_props
                        .and_then(|p| get(p, "EventBusName"))
                        .and_then(ref_name),
                    id: rule_id,
                    function: function.to_owned(),
                });
            }
            Some("Schedule" | "ScheduleV2") => {
                let expression = event_props
                    .and_then(|p| get(p, "Schedule").or_else(|| get(p, "ScheduleExpression")))
                    .and_then(|s| resolve_parameter(doc, s))
                    .ok_or_else(|| {
                        TemplateError::Shape(format!(
                            "{rule_id}: a schedule expression is required"
                        ))
                    })?;
                self.schedules.push(ScheduleDef {
                    id: rule_id,
                    function: function.to_owned(),
                    expression,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// A stand-alone `AWS::Events::Rule`: one rule per function it targets.
    fn add_events_rule(&mut self, doc: &Yaml, id: &str, props: &Yaml) -> Result<(), TemplateError> {
        let Some(pattern) = get(props, "EventPattern") else {
            return Ok(());
        };
        let targets = get(props, "Targets").and_then(|t| t.as_sequence());
        for target in targets.into_iter().flatten() {
            if let Some(function) = get(target, "Arn").and_then(getatt_target) {
                self.rules.push(RuleDef {
                    id: id.to_owned(),
                    function,
                    bus: get(props, "EventBusName").and_then(ref_name),
                    pattern: yaml_to_json(doc, pattern, id)?,
                });
            }
        }
        Ok(())
    }
}

/// Matches events against the template's rules for one bus.
pub struct Router {
    engine: quamina::Quamina<usize>,
    rules: Vec<RuleDef>,
}

impl Router {
    /// Rules on `bus` (a logical id or name as written in the template).
    pub fn new(model: &TemplateModel, bus: &str) -> Result<Self, TemplateError> {
        Self::on(model, Some(bus))
    }

    /// Rules on the account's default bus, where AWS services (CloudTrail, S3) put events.
    pub fn default_bus(model: &TemplateModel) -> Result<Self, TemplateError> {
        Self::on(model, None)
    }

    fn on(model: &TemplateModel, bus: Option<&str>) -> Result<Self, TemplateError> {
        let rules: Vec<RuleDef> = model
            .rules
            .iter()
            .filter(|r| r.bus.as_deref() == bus)
            .cloned()
            .collect();
        let mut engine = quamina::Quamina::new();
        for (index, rule) in rules.iter().enumerate() {
            engine
                .add_pattern(index, &rule.pattern.to_string())
                .map_err(|e| TemplateError::Pattern {
                    rule: rule.id.clone(),
                    message: format!("{e:?}"),
                })?;
        }
        Ok(Self { engine, rules })
    }

    /// The rules an EventBridge envelope matches, in template order.
    pub fn route(&self, envelope: &serde_json::Value) -> Result<Vec<&RuleDef>, String> {
        let bytes = serde_json::to_vec(envelope).map_err(|e| e.to_string())?;
        let mut matched = self
            .engine
            .matches_for_event(&bytes)
            .map_err(|e| format!("{e:?}"))?;
        matched.sort_unstable();
        matched.dedup();
        Ok(matched.into_iter().map(|i| &self.rules[i]).collect())
    }

    pub fn rules(&self) -> &[RuleDef] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> TemplateModel {
        TemplateModel::load(&crate::repo_root().join("infra/template.yaml")).unwrap()
    }

    #[test]
    fn reads_functions_and_rules_from_the_template() {
        let model = model();
        let audit = &model.functions["AuditWriterFunction"];
        assert_eq!(audit.binary, "audit-writer");
        assert!(audit.env_names().any(|n| n == "AUDIT_BUCKET"));
        let digest = &model.functions["AuditDigestFunction"];
        assert!(digest.env.contains(&(
            "DIGEST_LOOKBACK_HOURS".to_owned(),
            TemplateValue::Literal("48".into())
        )));
        let seal = model
            .schedules
            .iter()
            .find(|s| s.id == "AuditDigestFunction.Seal")
            .unwrap();
        assert_eq!(seal.expression, "rate(1 hour)");
        let rule = model
            .rules
            .iter()
            .find(|r| r.id == "AuditWriterFunction.AllDomainEvents")
            .unwrap();
        assert_eq!(rule.bus.as_deref(), Some("EventBus"));
        assert_eq!(
            rule.pattern,
            serde_json::json!({"source": [{"prefix": "keyward."}]})
        );
    }

    #[test]
    fn routes_keyward_events_to_the_audit_writer_and_nothing_else() {
        let router = Router::new(&model(), "EventBus").unwrap();
        let keyward = serde_json::json!({"source": "keyward.rotation", "detail-type": "SecretRotated", "detail": {}});
        let ids: Vec<&str> = router
            .route(&keyward)
            .unwrap()
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert!(
            ids.contains(&"AuditWriterFunction.AllDomainEvents"),
            "{ids:?}"
        );
        let foreign = serde_json::json!({"source": "aws.secretsmanager", "detail-type": "AWS API Call via CloudTrail", "detail": {}});
        assert!(
            !router
                .route(&foreign)
                .unwrap()
                .iter()
                .any(|r| r.function == "AuditWriterFunction")
        );
        let lookalike = serde_json::json!({"source": "keywardx.rotation", "detail": {}});
        assert!(router.route(&lookalike).unwrap().is_empty());
    }

    #[test]
    fn vercel_sync_rules_resolve_parameters_and_scope_to_the_stack() {
        let model = model();
        let default_bus = Router::default_bus(&model).unwrap();
        let call = |secret: &str, name: &str| {
            serde_json::json!({"source": "aws.secretsmanager", "detail-type": "AWS API Call via CloudTrail",
                "detail": {"eventName": name, "requestParameters": {"secretId": secret}}})
        };
        let targets = |router: &Router, event: serde_json::Value| -> Vec<String> {
            router
                .route(&event)
                .unwrap()
                .iter()
                .map(|r| r.id.clone())
                .filter(|id| id.starts_with("VercelSyncFunction."))
                .collect()
        };
        // Parameters at their defaults: Org acme, Environment dev.
        assert_eq!(
            targets(&default_bus, call("/acme/dev/web/k", "PutSecretValue")),
            ["VercelSyncFunction.SecretChanges"]
        );
        assert_eq!(
            targets(
                &default_bus,
                call(
                    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:/acme/dev/web/k-AbCdEf",
                    "TagResource"
                )
            ),
            ["VercelSyncFunction.SecretChanges"]
        );
        assert!(targets(&default_bus, call("/acme/prod/web/k", "PutSecretValue")).is_empty());
        assert!(targets(&default_bus, call("/acme/dev/web/k", "GetSecretValue")).is_empty());
        let bus = Router::new(&model, "EventBus").unwrap();
        let request = |env: &str| {
            serde_json::json!({"source": "keyward.ci-gateway", "detail-type": "VercelSyncRequested",
                "detail": {"data": {"type": "VercelSyncRequested", "fields": {"scope": {"environment": env}}}}})
        };
        assert_eq!(
            targets(&bus, request("dev")),
            ["VercelSyncFunction.SyncRequested"]
        );
        assert!(targets(&bus, request("prod")).is_empty());
    }

    #[test]
    fn template_shape_errors_are_clear() {
        let err = TemplateModel::parse(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties: {}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "F: Metadata.BuildProperties.Binary is required"
        );
        let err = TemplateModel::parse("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {BuildProperties: {Binary: f}}\n    Properties:\n      Events:\n        E:\n          Type: EventBridgeRule\n          Properties:\n            Pattern: !Sub x\n").unwrap_err();
        assert!(err.to_string().contains("must be literal YAML"), "{err}");
        assert!(TemplateModel::parse("Outputs: {}").is_err());
    }

    #[test]
    fn bad_patterns_are_rejected_by_the_engine() {
        let mut model = model();
        model.rules[0].pattern = serde_json::json!({"source": [{"prefix": 5}]});
        let bus = model.rules[0].bus.clone().unwrap();
        assert!(Router::new(&model, &bus).is_err());
    }
}
