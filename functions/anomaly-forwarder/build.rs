//! Converts the shipped rules from YAML (the file people read, review and extend) to JSON when
//! the crate is built, so a cold start parses JSON: the same `RuleFile`, several times faster.
//! A rules file that is not valid YAML fails the build, naming the problem.

use std::path::Path;

const SOURCE: &str = "rules/default.yaml";

fn main() {
    println!("cargo::rerun-if-changed={SOURCE}");
    let yaml = std::fs::read_to_string(SOURCE).unwrap_or_else(|e| panic!("reading {SOURCE}: {e}"));
    let rules: serde_json::Value = serde_yaml_ng::from_str(&yaml)
        .unwrap_or_else(|e| panic!("{SOURCE} is not a rules file: {e}"));
    let out_dir = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    let json = serde_json::to_string(&rules).expect("a JSON value always serialises");
    std::fs::write(Path::new(&out_dir).join("default-rules.json"), json)
        .unwrap_or_else(|e| panic!("writing the JSON rules: {e}"));
}
