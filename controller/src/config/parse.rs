//! Reading `handoffd.yaml`: the file and its secret files, the YAML parsed with serde-saphyr,
//! and a syntax or type error folded into one line that names the key path.

use super::{Config, ConfigError, Secret};
use serde::Deserialize;
use std::fmt;
use std::path::Path;

impl Config {
    /// Reads and validates `path`; `secret_file` is read relative to nothing (absolute paths).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: String::new(),
            problem: format!("cannot read: {e} (copy conf/handoffd.yaml.sample to it)"),
        })?;
        let mut cfg = Self::parse(&text, &file)?;
        let read_secret = |key: &str, path: &str| -> Result<Secret, ConfigError> {
            let s = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: file.clone(),
                key: key.into(),
                problem: format!("cannot read {path}: {e}"),
            })?;
            if s.trim().is_empty() {
                return Err(ConfigError { file: file.clone(), key: key.into(), problem: format!("{path} is empty") });
            }
            Ok(Secret::new(s.trim()))
        };
        if let Some(ami) = cfg.ami.as_mut() {
            if let Some(sf) = ami.secret_file.clone() {
                ami.secret = read_secret("ami.secret_file", &sf)?;
            }
        }
        if let Some(esl) = cfg.esl.as_mut() {
            if let Some(pf) = esl.password_file.clone() {
                esl.password = read_secret("esl.password_file", &pf)?;
            }
        }
        Ok(cfg)
    }

    /// Parses and validates YAML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| {
            let at = e.location().map(|l| (l.line(), l.column()));
            let mut err = syntax_error(origin, &e.to_string());
            if let Some(key) = at.and_then(|(line, col)| key_path_at(text, line, col)) {
                err.key = key;
            }
            err
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }
}

fn syntax_error(file: &str, message: &str) -> ConfigError {
    let first = message.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("invalid YAML");
    // "error: line L column C: what" → "what" (the place goes in front).
    let first = match first.strip_prefix("error: line ").and_then(|r| r.split_once(": ")) {
        Some((place, what)) if place.contains(" column ") => what,
        _ => first,
    }
    .to_string();
    // "... at line L column C" → "file:L:C"
    let loc = message.split("line ").nth(1).and_then(|rest| {
        let line: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let col: String = rest.split("column ").nth(1)?.chars().take_while(|c| c.is_ascii_digit()).collect();
        (!line.is_empty() && !col.is_empty()).then(|| format!("{line}:{col}"))
    });
    match loc {
        Some(l) => ConfigError { file: format!("{file}:{l}"), key: String::new(), problem: first },
        None => ConfigError { file: file.into(), key: String::new(), problem: first },
    }
}

/// A YAML node with the places of its keys and values, for naming the key path of a type error.
enum Node {
    Map(Vec<(serde_saphyr::Spanned<KeyText>, serde_saphyr::Spanned<Node>)>),
    Seq(Vec<serde_saphyr::Spanned<Node>>),
    Scalar,
}

/// A mapping key as text (any scalar).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("~".into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = a.next_element()? {
                    items.push(n);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// The key path (`sessions.grace_s`, `devices[0].user`) of the key or value that starts at
/// `line`:`column` of `text`, for errors serde reports with a place but no key.
fn key_path_at(text: &str, line: u64, column: u64) -> Option<String> {
    fn at(l: &serde_saphyr::Location, line: u64, column: u64) -> bool {
        l.line() == line && l.column() == column
    }
    fn walk(node: &Node, path: &str, line: u64, column: u64) -> Option<String> {
        match node {
            Node::Scalar => None,
            Node::Seq(items) => items.iter().enumerate().find_map(|(i, n)| {
                let p = format!("{path}[{i}]");
                if at(&n.referenced, line, column) && !matches!(n.value, Node::Map(_) | Node::Seq(_)) {
                    return Some(p);
                }
                walk(&n.value, &p, line, column).or_else(|| at(&n.referenced, line, column).then_some(p))
            }),
            Node::Map(entries) => entries.iter().find_map(|(k, v)| {
                let p = if path.is_empty() { k.value.0.clone() } else { format!("{path}.{}", k.value.0) };
                if at(&k.referenced, line, column) {
                    return Some(p);
                }
                walk(&v.value, &p, line, column).or_else(|| at(&v.referenced, line, column).then_some(p))
            }),
        }
    }
    let root: Node = serde_saphyr::from_str(text).ok()?;
    walk(&root, "", line, column).filter(|p| !p.is_empty())
}
