//! The manifest's projections against what consumes them and what is committed:
//!
//! - the Terraform module's variables (`infra/terraform/variables.tf`, read with the small HCL
//!   scanner below) match the `.tfvars.json` files `keyward render` writes: every key is a
//!   declared variable, every variable without a default is given, the `secrets` object's
//!   attributes are exactly the keys of each rendered secret, and every value has the declared
//!   type;
//! - `infra/generated/` is what `keyward render` gives now (the CLI's own `--check`);
//! - `infra/github/request-app-secret.yml` is what `keyward workflows` gives now.
//!
//! No Terraform binary and no HCL crate: the scanner understands the subset of HCL a
//! `variable` block uses (comments, strings with templates, heredocs, nested blocks, type
//! expressions), which is all these checks need.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use keyward_shared::manifest::Manifest;
use serde_json::Value;

fn root() -> PathBuf {
    keyward_integration::repo_root()
}

fn manifest() -> Manifest {
    Manifest::load(&root().join("infra/config/manifest")).unwrap()
}

/// Every rendered tfvars file: (relative path, parsed JSON).
fn rendered_tfvars(manifest: &Manifest) -> Vec<(String, Value)> {
    let files = keyward_shared::projections::render(manifest).unwrap();
    let tfvars: Vec<(String, Value)> = files
        .into_iter()
        .filter(|(path, _)| path.starts_with("terraform/") && path.ends_with(".tfvars.json"))
        .map(|(path, text)| {
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
            (path, json)
        })
        .collect();
    assert_eq!(
        tfvars.len(),
        manifest.environments.len(),
        "one tfvars file per environment"
    );
    tfvars
}

fn module_variables() -> BTreeMap<String, Variable> {
    let path = root().join("infra/terraform/variables.tf");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    variables(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ------------------------------------------------------------------------------ the checks

#[test]
fn every_tfvars_key_is_a_declared_variable() {
    let declared = module_variables();
    for (path, vars) in rendered_tfvars(&manifest()) {
        for key in vars.as_object().unwrap().keys() {
            assert!(
                declared.contains_key(key),
                "{path}: `{key}` is not a variable of infra/terraform/variables.tf (declared: {:?})",
                declared.keys().collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn every_variable_without_a_default_is_rendered() {
    let declared = module_variables();
    let required: Vec<&String> = declared
        .iter()
        .filter(|(_, v)| !v.has_default)
        .map(|(name, _)| name)
        .collect();
    // The projection's three; the others (KMS key, rotation function, recovery window) have
    // defaults and come from the caller.
    assert_eq!(required, ["environment", "org", "secrets"]);
    for (path, vars) in rendered_tfvars(&manifest()) {
        for name in &required {
            assert!(
                vars.get(name.as_str()).is_some(),
                "{path}: variable `{name}` has no default, so the tfvars must give it"
            );
        }
    }
}

#[test]
fn secrets_object_attributes_are_the_rendered_secret_keys() {
    let declared = module_variables();
    let secrets = declared.get("secrets").expect("variable secrets");
    let Some(Type::Collection(kind, element)) = &secrets.ty else {
        panic!(
            "secrets must be typed map(object({{...}})), is {:?}",
            secrets.ty
        );
    };
    assert_eq!(kind, "map", "secrets is a map keyed <service>/<name>");
    let Type::Object(attributes) = element.as_ref() else {
        panic!("secrets must be a map of object({{...}}), is map({element:?})");
    };
    let attribute_names: BTreeSet<&str> = attributes.keys().map(String::as_str).collect();
    assert_eq!(
        attribute_names,
        BTreeSet::from([
            "name",
            "description",
            "tags",
            "rotation_enabled",
            "rotation_days",
            "replica_regions",
            "readers",
        ]),
        "the seven attributes of shared/src/projections.rs TerraformSecret"
    );
    let mut seen = 0;
    for (path, vars) in rendered_tfvars(&manifest()) {
        for (key, secret) in vars["secrets"].as_object().unwrap() {
            let keys: BTreeSet<&str> = secret
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys, attribute_names,
                "{path}: secret {key}'s keys differ from the secrets variable's object attributes"
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "the sample manifest renders secrets");
}

#[test]
fn rendered_values_have_the_declared_types() {
    let declared = module_variables();
    for (path, vars) in rendered_tfvars(&manifest()) {
        for (key, value) in vars.as_object().unwrap() {
            let ty = declared[key]
                .ty
                .as_ref()
                .unwrap_or_else(|| panic!("variable {key} has no type"));
            if let Err(problem) = conforms(value, ty) {
                panic!("{path}: {key}{problem}");
            }
        }
    }
}

#[test]
fn committed_projections_are_current() {
    let manifest = manifest();
    let files = keyward_shared::projections::render(&manifest).unwrap();
    // `keyward render --check`: missing, different and no-longer-generated files.
    let problems = keyward_cli::render_to(&root().join("infra/generated"), &files, true).unwrap();
    assert!(
        problems.is_empty(),
        "infra/generated is stale; run `cargo run -p keyward-cli -- render` from the repository root:\n{}",
        problems.join("\n")
    );
    // And byte for byte, independently of render_to.
    for (relative, text) in &files {
        let path = root().join("infra/generated").join(relative);
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&committed, text, "{}", path.display());
    }
}

#[test]
fn committed_request_workflow_is_current() {
    let path = root().join("infra/github/request-app-secret.yml");
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        committed == keyward_cli::workflows::request_workflow(&manifest()),
        "{} is stale; run `cargo run -p keyward-cli -- workflows` from the repository root",
        path.display()
    );
}

// ------------------------------------------------------------------------------ the scanner

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    /// A quoted string or heredoc: its text, with templates kept verbatim.
    Str(String),
    Number,
    Punct(&'static str),
}

const PUNCTS: [&str; 27] = [
    "...", "==", "!=", "<=", ">=", "=>", "&&", "||", "=", "{", "}", "(", ")", "[", "]", ",", ":",
    "?", ".", "<", ">", "+", "-", "*", "/", "%", "!",
];

/// The end (exclusive) of the template expression whose `${`/`%{` ends at `start`.
fn skip_template(chars: &[char], mut i: usize) -> Result<usize, String> {
    let mut depth = 1;
    while depth > 0 {
        match chars.get(i) {
            None => return Err("unterminated template expression".into()),
            Some('"') => {
                let (_, end) = string(chars, i + 1)?;
                i = end;
                continue;
            }
            Some('{') => depth += 1,
            Some('}') => depth -= 1,
            Some(_) => {}
        }
        i += 1;
    }
    Ok(i)
}

/// A quoted string whose opening quote is just before `i`: (text, index after the closing quote).
fn string(chars: &[char], mut i: usize) -> Result<(String, usize), String> {
    let mut text = String::new();
    loop {
        match chars.get(i) {
            None | Some('\n') => return Err("unterminated string".into()),
            Some('"') => return Ok((text, i + 1)),
            Some('\\') => {
                let escaped = *chars.get(i + 1).ok_or("unterminated escape")?;
                text.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                i += 2;
            }
            // `$${` and `%%{` are literal `${` and `%{`.
            Some(&c @ ('$' | '%'))
                if chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&'{') =>
            {
                text.push(c);
                text.push('{');
                i += 3;
            }
            Some('$' | '%') if chars.get(i + 1) == Some(&'{') => {
                let end = skip_template(chars, i + 2)?;
                text.extend(&chars[i..end]);
                i = end;
            }
            Some(&c) => {
                text.push(c);
                i += 1;
            }
        }
    }
}

fn tokens(source: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let rest = |i: usize, s: &str| chars[i..].iter().take(s.len()).copied().eq(s.chars());
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' || rest(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest(i, "/*") {
            let close = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .ok_or("unterminated /* comment")?;
            i = close + 2;
        } else if c == '"' {
            let (text, end) = string(&chars, i + 1)?;
            out.push(Token::Str(text));
            i = end;
        } else if rest(i, "<<")
            && chars
                .get(i + 2)
                .is_some_and(|&n| n == '-' || n.is_ascii_alphabetic())
        {
            // Heredoc: <<MARKER or <<-MARKER, up to a line holding only the marker.
            let mut j = i + 2;
            if chars[j] == '-' {
                j += 1;
            }
            let start = j;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let marker: String = chars[start..j].iter().collect();
            let body_start = (j..chars.len())
                .find(|&k| chars[k] == '\n')
                .ok_or("heredoc without body")?
                + 1;
            let body: String = chars[body_start..].iter().collect();
            let mut consumed = 0;
            let mut text = String::new();
            let mut closed = false;
            for line in body.split_inclusive('\n') {
                consumed += line.chars().count();
                if line.trim() == marker {
                    closed = true;
                    break;
                }
                text.push_str(line);
            }
            if !closed {
                return Err(format!("heredoc {marker} is never closed"));
            }
            out.push(Token::Str(text));
            i = body_start + consumed;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-')
            {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Number);
        } else if let Some(p) = PUNCTS.iter().find(|p| rest(i, p)) {
            out.push(Token::Punct(p));
            i += p.len();
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(out)
}

/// The index of the bracket closing the one at `open`.
fn matching(tokens: &[Token], open: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t {
            Token::Punct("{" | "(" | "[") => depth += 1,
            Token::Punct("}" | ")" | "]") => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    Err("unbalanced brackets".into())
}

/// The attributes (`name = ...`) directly in a block body, not in its nested blocks:
/// (name, index of the first token of the value).
fn attributes(body: &[Token]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for (i, t) in body.iter().enumerate() {
        match t {
            Token::Punct("{" | "(" | "[") => depth += 1,
            Token::Punct("}" | ")" | "]") => depth = depth.saturating_sub(1),
            Token::Ident(name) | Token::Str(name)
                if depth == 0 && body.get(i + 1) == Some(&Token::Punct("=")) =>
            {
                out.push((name.clone(), i + 2));
            }
            _ => {}
        }
    }
    out
}

/// A Terraform type constraint.
#[derive(Debug, Clone, PartialEq)]
enum Type {
    Primitive(String),
    /// list, set or map of an element type.
    Collection(String, Box<Type>),
    Object(BTreeMap<String, Type>),
}

fn expect(tokens: &[Token], i: &mut usize, punct: &'static str) -> Result<(), String> {
    if tokens.get(*i) == Some(&Token::Punct(punct)) {
        *i += 1;
        Ok(())
    } else {
        Err(format!(
            "expected `{punct}` in a type, found {:?}",
            tokens.get(*i)
        ))
    }
}

fn parse_type(tokens: &[Token], i: &mut usize) -> Result<Type, String> {
    let Some(Token::Ident(name)) = tokens.get(*i) else {
        return Err(format!("expected a type, found {:?}", tokens.get(*i)));
    };
    *i += 1;
    match name.as_str() {
        "string" | "number" | "bool" | "any" => Ok(Type::Primitive(name.clone())),
        "list" | "set" | "map" => {
            expect(tokens, i, "(")?;
            let element = parse_type(tokens, i)?;
            expect(tokens, i, ")")?;
            Ok(Type::Collection(name.clone(), Box::new(element)))
        }
        "object" => {
            expect(tokens, i, "(")?;
            expect(tokens, i, "{")?;
            let mut attributes = BTreeMap::new();
            while tokens.get(*i) != Some(&Token::Punct("}")) {
                let attribute = match tokens.get(*i) {
                    Some(Token::Ident(a) | Token::Str(a)) => a.clone(),
                    other => return Err(format!("expected an attribute name, found {other:?}")),
                };
                *i += 1;
                expect(tokens, i, "=")?;
                let ty = parse_type(tokens, i)?;
                if attributes.insert(attribute.clone(), ty).is_some() {
                    return Err(format!("attribute {attribute} twice"));
                }
                if tokens.get(*i) == Some(&Token::Punct(",")) {
                    *i += 1;
                }
            }
            expect(tokens, i, "}")?;
            expect(tokens, i, ")")?;
            Ok(Type::Object(attributes))
        }
        other => Err(format!("type `{other}` is not one this scanner knows")),
    }
}

#[derive(Debug)]
struct Variable {
    has_default: bool,
    ty: Option<Type>,
}

/// The `variable` blocks of a `.tf` file, by name.
fn variables(source: &str) -> Result<BTreeMap<String, Variable>, String> {
    let tokens = tokens(source)?;
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < tokens.len() {
        // Top level: blocks only (`kind "label"... {`).
        let Token::Ident(kind) = &tokens[i] else {
            return Err(format!(
                "expected a block at the top level, found {:?}",
                tokens[i]
            ));
        };
        let mut labels = Vec::new();
        let mut j = i + 1;
        while let Some(Token::Str(label) | Token::Ident(label)) = tokens.get(j) {
            labels.push(label.clone());
            j += 1;
        }
        if tokens.get(j) != Some(&Token::Punct("{")) {
            return Err(format!("block {kind} {labels:?} has no body"));
        }
        let close = matching(&tokens, j)?;
        let body = &tokens[j + 1..close];
        if kind == "variable" {
            let [name] = labels.as_slice() else {
                return Err(format!("variable block with labels {labels:?}"));
            };
            let attributes = attributes(body);
            let ty = match attributes.iter().find(|(a, _)| a == "type") {
                Some((_, start)) => {
                    let mut k = *start;
                    let ty =
                        parse_type(body, &mut k).map_err(|e| format!("variable {name}: {e}"))?;
                    Some(ty)
                }
                None => None,
            };
            let variable = Variable {
                has_default: attributes.iter().any(|(a, _)| a == "default"),
                ty,
            };
            if out.insert(name.clone(), variable).is_some() {
                return Err(format!("variable {name} declared twice"));
            }
        }
        i = close + 1;
    }
    Ok(out)
}

/// Whether a tfvars JSON value fits a type constraint; the error says where it does not.
fn conforms(value: &Value, ty: &Type) -> Result<(), String> {
    let fail = |what: &str| Err(format!(": expected {what}, found {value}"));
    match ty {
        Type::Primitive(p) => match p.as_str() {
            "any" => Ok(()),
            "string" if value.is_string() => Ok(()),
            "number" if value.is_number() => Ok(()),
            "bool" if value.is_boolean() => Ok(()),
            other => fail(other),
        },
        Type::Collection(kind, element) if kind == "map" => {
            let Some(map) = value.as_object() else {
                return fail("an object (map)");
            };
            for (k, v) in map {
                conforms(v, element).map_err(|e| format!("[{k:?}]{e}"))?;
            }
            Ok(())
        }
        Type::Collection(_, element) => {
            let Some(list) = value.as_array() else {
                return fail("an array");
            };
            for (n, v) in list.iter().enumerate() {
                conforms(v, element).map_err(|e| format!("[{n}]{e}"))?;
            }
            Ok(())
        }
        Type::Object(attributes) => {
            let Some(map) = value.as_object() else {
                return fail("an object");
            };
            let given: BTreeSet<&String> = map.keys().collect();
            let wanted: BTreeSet<&String> = attributes.keys().collect();
            if given != wanted {
                return Err(format!(
                    ": attributes {given:?}, the type declares {wanted:?}"
                ));
            }
            for (k, t) in attributes {
                conforms(&map[k], t).map_err(|e| format!(".{k}{e}"))?;
            }
            Ok(())
        }
    }
}

#[test]
fn scanner_reads_what_terraform_reads() {
    let source = r#"
        # variable "commented" { type = string }
        // variable "also_commented" {}
        /* variable "block_commented" {
             default = 1
           } */
        terraform {
          required_version = ">= 1.5"
        }
        variable "plain" {
          description = "braces { in a string } and a # hash // and \"quotes\""
          type        = string
          validation {
            # A default inside a nested block is not the variable's.
            condition     = can(regex("^[a-z]{1,3}$", var.plain)) && var.plain != "x=y"
            error_message = "Interpolated ${join("}", ["a", "b"])} and $${literal}."
          }
        }
        variable "with_default" {
          type    = map(list(string))
          default = {}
        }
        variable "doc" {
          description = <<-EOT
            variable "in_heredoc" {}
            }}}
          EOT
          type = object({
            "quoted" = bool
            nested   = object({ a = number, b = set(string) }),
            loose    = any
          })
        }
        variable "untyped" {}
    "#;
    let vars = variables(source).unwrap();
    assert_eq!(
        vars.keys().map(String::as_str).collect::<Vec<_>>(),
        ["doc", "plain", "untyped", "with_default"]
    );
    assert!(
        !vars["plain"].has_default,
        "a default in a nested block does not count"
    );
    assert!(vars["with_default"].has_default);
    assert_eq!(vars["plain"].ty, Some(Type::Primitive("string".into())));
    assert_eq!(vars["untyped"].ty, None);
    let Some(Type::Object(doc)) = &vars["doc"].ty else {
        panic!("{:?}", vars["doc"].ty)
    };
    assert_eq!(
        doc.keys().map(String::as_str).collect::<Vec<_>>(),
        ["loose", "nested", "quoted"]
    );
    let value = serde_json::json!({"quoted": true, "nested": {"a": 1, "b": ["x"]}, "loose": null});
    conforms(&value, vars["doc"].ty.as_ref().unwrap()).unwrap();
    let missing = serde_json::json!({"quoted": true, "nested": {"a": 1}, "loose": 1});
    assert!(conforms(&missing, vars["doc"].ty.as_ref().unwrap()).is_err());
    let wrong = serde_json::json!({"x": ["a", 1]});
    assert!(conforms(&wrong, vars["with_default"].ty.as_ref().unwrap()).is_err());
    assert!(variables("variable \"open\" {").is_err());
    assert!(variables("variable \"s\" { description = \"unterminated }").is_err());
}
