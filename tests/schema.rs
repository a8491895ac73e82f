//! The JSON Schemas for v6guard.yaml and the policy files (schema/*.schema.json, shipped in
//! /usr/share/v6guard/schema/), kept honest with the parser:
//!
//! - every shipped example validates (packaging/debian/v6guard.yaml as shipped and with every
//!   setting uncommented, policies/*.yaml);
//! - invalid documents are rejected by the schema and by the parser alike;
//! - each object's keys in the schema are exactly the keys the parser accepts (its "unknown
//!   key; expected one of ..." message lists them), and every example value the schema shows
//!   is one the parser accepts.

use std::path::{Path, PathBuf};

use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn schema(name: &str) -> Value {
    let path = Path::new(REPO).join("schema").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn config_schema() -> Value {
    schema("v6guard.schema.json")
}

fn policy_schema() -> Value {
    schema("policy.schema.json")
}

/// A YAML document as the JSON value editors validate (comments only: null).
fn yaml(text: &str) -> Value {
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"));
    serde_json::to_value(value).expect("YAML as JSON")
}

/// The schema's errors for `text`, one per line; empty when valid.
fn schema_errors(schema: &Value, text: &str) -> Vec<String> {
    let validator = jsonschema::draft7::new(schema).expect("the schema compiles");
    validator
        .iter_errors(&yaml(text))
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn parse_config(text: &str) -> Result<(), String> {
    v6guard::config::parse_config(Path::new("v6guard.yaml"), text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn parse_policy(text: &str) -> Result<(), String> {
    v6guard::config::parse_policy_file(Path::new("policy.yaml"), text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The default v6guard.yaml with every `#KEY:` setting uncommented (prose stays a comment),
/// as tests/packaging.rs reads it.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            Some(rest) if rest.starts_with("  ") => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn policy_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(REPO).join("policies"))
        .expect("policies/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "policies/ has {} examples", files.len());
    files
}

#[test]
fn every_shipped_example_validates() {
    let config = std::fs::read_to_string(Path::new(REPO).join("packaging/debian/v6guard.yaml"))
        .expect("packaging/debian/v6guard.yaml");
    let settings = uncommented(&config);
    assert!(
        yaml(&settings).as_object().is_some_and(|o| o.len() >= 5),
        "uncommenting set too little:\n{settings}"
    );
    for (what, text) in [("as shipped", &config), ("uncommented", &settings)] {
        let errors = schema_errors(&config_schema(), text);
        assert!(errors.is_empty(), "v6guard.yaml {what}: {errors:#?}");
        assert_eq!(parse_config(text), Ok(()), "v6guard.yaml {what}");
    }
    for file in policy_files() {
        let text = std::fs::read_to_string(&file).expect("policy");
        let errors = schema_errors(&policy_schema(), &text);
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        assert_eq!(parse_policy(&text), Ok(()), "{}", file.display());
    }
}

#[test]
fn invalid_documents_are_rejected_by_schema_and_parser() {
    let configs = [
        "bogus: 1\n",
        "log_format: xml\n",
        "resync_interval: 0\n",
        "resync_interval: 5 minutes\n",
        "daemon_json: etc/docker/daemon.json\n",
        "docker_host: localhost:2375\n",
        "metrics_listen: localhost\n",
        "defaults:\n  nat66_ula: \"yes\"\n",
        "defaults:\n  gateway_mode: bridge\n",
        "defaults:\n  zzz: true\n",
        "- a list\n",
    ];
    for text in configs {
        assert!(
            !schema_errors(&config_schema(), text).is_empty(),
            "the schema accepts v6guard.yaml:\n{text}"
        );
        assert!(
            parse_config(text).is_err(),
            "the parser accepts v6guard.yaml:\n{text}"
        );
    }
    let policies = [
        "zzz: {}\n",
        "networks:\n  n:\n    icc: \"no\"\n",
        "networks:\n  n:\n    gateway_mode: bridge\n",
        "networks:\n  n:\n    ndp_proxy: {}\n",
        "networks:\n  n:\n    ndp_proxy:\n      interface: a-name-longer-than-15\n",
        "networks:\n  n:\n    snat_address: 192.0.2.1\n",
        "containers:\n  /web: {}\n",
        "containers:\n  web:\n    denyy: []\n",
        "containers:\n  web:\n    deny: [\"80:80\"]\n",
        "containers:\n  web:\n    expose: [\"80/icmp\"]\n",
        "containers:\n  web:\n    expose: [70000]\n",
        "containers:\n  web:\n    allow_from: 2001:db8::/32\n",
        "containers:\n  web:\n    allow_from: [\"2001:db8::/200\"]\n",
    ];
    for text in policies {
        assert!(
            !schema_errors(&policy_schema(), text).is_empty(),
            "the schema accepts the policy:\n{text}"
        );
        assert!(
            parse_policy(text).is_err(),
            "the parser accepts the policy:\n{text}"
        );
    }
}

/// The keys the parser lists for an unknown key in `probe` (it must have exactly one).
fn parser_keys(error: Result<(), String>) -> Vec<String> {
    let message = error.expect_err("the unknown key was accepted");
    let list = message
        .split("unknown key; expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in: {message}"));
    let mut keys: Vec<String> = list
        .lines()
        .next()
        .unwrap_or_default()
        .split(", ")
        .map(str::to_string)
        .collect();
    keys.sort();
    keys
}

/// The property names of the schema object at `pointer`.
fn schema_keys(schema: &Value, pointer: &str) -> Vec<String> {
    let mut keys: Vec<String> = schema
        .pointer(&format!("{pointer}/properties"))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no properties at {pointer}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn schema_keys_are_the_keys_the_parser_accepts() {
    let config = config_schema();
    let policy = policy_schema();
    let cases: [(&Value, &str, Result<(), String>); 6] = [
        (&config, "", parse_config("zzz: 1\n")),
        (
            &config,
            "/properties/defaults",
            parse_config("defaults:\n  zzz: 1\n"),
        ),
        (&policy, "", parse_policy("zzz: 1\n")),
        (
            &policy,
            "/definitions/network",
            parse_policy("networks:\n  n:\n    zzz: 1\n"),
        ),
        (
            &policy,
            "/definitions/network/properties/ndp_proxy",
            parse_policy("networks:\n  n:\n    ndp_proxy:\n      interface: eth0\n      zzz: 1\n"),
        ),
        (
            &policy,
            "/definitions/container",
            parse_policy("containers:\n  c:\n    zzz: 1\n"),
        ),
    ];
    for (schema, pointer, parsed) in cases {
        assert_eq!(
            schema_keys(schema, pointer),
            parser_keys(parsed),
            "schema object `{pointer}`"
        );
    }
}

#[test]
fn the_schemas_examples_are_values_the_parser_accepts() {
    let config = config_schema();
    for (key, property) in config["properties"].as_object().expect("properties") {
        for example in property["examples"].as_array().into_iter().flatten() {
            let text = format!("{key}: {example}\n");
            assert_eq!(parse_config(&text), Ok(()), "{text}");
            assert!(schema_errors(&config, &text).is_empty(), "{text}");
        }
    }
    let policy = policy_schema();
    let network = &policy["definitions"]["network"]["properties"];
    let ports = &policy["definitions"]["ports"]["items"]["examples"];
    let prefixes =
        &policy["definitions"]["container"]["properties"]["allow_from"]["items"]["examples"];
    let mut texts = Vec::new();
    for address in network["snat_address"]["examples"].as_array().expect("") {
        texts.push(format!("networks:\n  n:\n    snat_address: {address}\n"));
    }
    for interface in network["ndp_proxy"]["properties"]["interface"]["examples"]
        .as_array()
        .expect("interface examples")
    {
        texts.push(format!(
            "networks:\n  n:\n    ndp_proxy:\n      interface: {interface}\n"
        ));
    }
    for mode in network["gateway_mode"]["enum"].as_array().expect("modes") {
        texts.push(format!("networks:\n  n:\n    gateway_mode: {mode}\n"));
    }
    for port in ports.as_array().expect("port examples") {
        texts.push(format!("containers:\n  c:\n    expose: [{port}]\n"));
    }
    for prefix in prefixes.as_array().expect("prefix examples") {
        texts.push(format!("containers:\n  c:\n    allow_from: [{prefix}]\n"));
    }
    for text in texts {
        assert_eq!(parse_policy(&text), Ok(()), "{text}");
        assert!(schema_errors(&policy, &text).is_empty(), "{text}");
    }
}
