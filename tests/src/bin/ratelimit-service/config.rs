//! envoyproxy/ratelimit's configuration file (one domain, a tree of descriptors) read and turned
//! into limitador limits, one per node that carries a `rate_limit`.

use limitador::limit::{Condition, Limit};
use serde::Deserialize;
use std::collections::HashMap;

/// The file, as envoyproxy/ratelimit reads it (fields it has and this stand-in does not, such as
/// `shadow_mode` or `replaces`, are refused rather than silently ignored).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub domain: String,
    #[serde(default)]
    pub descriptors: Vec<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub key: String,
    pub value: Option<String>,
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub descriptors: Vec<Node>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub unit: Unit,
    pub requests_per_unit: u32,
    pub unit_multiplier: Option<u32>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
        }
    }
}

/// One limit, with the `rate_limit` it came from (answered back as `current_limit`).
#[derive(Debug)]
pub struct Leaf {
    pub limit: Limit,
    pub rate_limit: RateLimit,
}

/// Reads and translates `text`; the error names the field (serde's path) or the node.
pub fn parse(text: &str) -> Result<(String, Vec<Leaf>), String> {
    let file: File = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut leaves = Vec::new();
    let mut path = Vec::new();
    for node in &file.descriptors {
        walk(
            &file.domain,
            node,
            &file.descriptors,
            &mut path,
            &mut leaves,
        )?;
    }
    Ok((file.domain, leaves))
}

/// One step of a descriptor's path: the key and, when the node fixes it, the value; a
/// valueless node with valued siblings of the same key stands for every other value
/// (envoyproxy/ratelimit tries `key_value` before `key`).
struct Step {
    key: String,
    value: Option<String>,
    except: Vec<String>,
}

fn walk(
    domain: &str,
    node: &Node,
    siblings: &[Node],
    path: &mut Vec<Step>,
    leaves: &mut Vec<Leaf>,
) -> Result<(), String> {
    let except = match node.value {
        Some(_) => Vec::new(),
        None => siblings
            .iter()
            .filter(|s| s.key == node.key)
            .filter_map(|s| s.value.clone())
            .collect(),
    };
    path.push(Step {
        key: node.key.clone(),
        value: node.value.clone(),
        except,
    });
    if let Some(rl) = &node.rate_limit {
        leaves.push(leaf(domain, path, rl)?);
    }
    for child in &node.descriptors {
        walk(domain, child, &node.descriptors, path, leaves)?;
    }
    path.pop();
    Ok(())
}

/// How a request's descriptor reaches limitador: a flat map of its entries in order
/// (`entry_<i>_key`, `entry_<i>_value`) and their number (`entries`), so a limit can ask for an
/// exact path.
pub fn values(entries: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m = HashMap::from([("entries".to_string(), entries.len().to_string())]);
    for (i, (k, v)) in entries.iter().enumerate() {
        m.insert(format!("entry_{i}_key"), k.to_string());
        m.insert(format!("entry_{i}_value"), v.to_string());
    }
    m
}

/// The limit for the descriptors whose entries walk `path` exactly: a condition on their number
/// and on each step's key (and fixed value), and one variable per valueless step, so each value
/// counts on its own.
fn leaf(domain: &str, path: &[Step], rl: &RateLimit) -> Result<Leaf, String> {
    let where_ = path
        .iter()
        .map(|s| format!("{}={}", s.key, s.value.as_deref().unwrap_or("*")))
        .collect::<Vec<_>>()
        .join(" ");
    let quote = |v: &str| -> Result<String, String> {
        if !v.contains('"') {
            Ok(format!("\"{v}\""))
        } else if !v.contains('\'') {
            Ok(format!("'{v}'"))
        } else {
            Err(format!(
                "{where_}: a key or value holding both quote characters"
            ))
        }
    };
    let mut conditions = vec![format!("entries == \"{}\"", path.len())];
    let mut variables = Vec::new();
    for (i, step) in path.iter().enumerate() {
        conditions.push(format!("entry_{i}_key == {}", quote(&step.key)?));
        match &step.value {
            Some(v) => conditions.push(format!("entry_{i}_value == {}", quote(v)?)),
            None => {
                for v in &step.except {
                    conditions.push(format!("entry_{i}_value != {}", quote(v)?));
                }
                variables.push(format!("entry_{i}_value"));
            }
        }
    }
    if rl.requests_per_unit == 0 {
        return Err(format!(
            "{where_}: rate_limit.requests_per_unit must be above 0"
        ));
    }
    let multiplier = rl.unit_multiplier.unwrap_or(1);
    if multiplier == 0 {
        return Err(format!(
            "{where_}: rate_limit.unit_multiplier must be above 0"
        ));
    }
    let conditions = conditions
        .iter()
        .map(|c| Condition::try_from(c.as_str()).map_err(|e| format!("{where_}: {c}: {e:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut limit = Limit::new(
        domain,
        i64::from(rl.requests_per_unit),
        rl.unit.seconds() * u64::from(multiplier),
        conditions,
        variables,
    );
    limit.set_name(rl.name.clone().unwrap_or(where_));
    Ok(Leaf {
        limit,
        rate_limit: rl.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
domain: scopegate
descriptors:
  - key: gateway
    value: saas
    descriptors:
      - key: server
        value: ops-console
        descriptors:
          - key: budget
            value: "tool:admin_report:60s"
            descriptors:
              - key: subject
                rate_limit: {unit: minute, requests_per_unit: 5}
          - key: budget
            value: "server:7200s"
            rate_limit: {unit: hour, requests_per_unit: 100, unit_multiplier: 2}
"#;

    fn ctx(entries: &[(&str, &str)]) -> HashMap<String, String> {
        values(entries)
    }

    #[test]
    fn each_leaf_is_a_limit_in_the_domain() {
        let (domain, leaves) = parse(FILE).expect("parses");
        assert_eq!(domain, "scopegate");
        assert_eq!(leaves.len(), 2);
        assert_eq!(leaves[0].limit.max_value(), 5);
        assert_eq!(leaves[0].limit.seconds(), 60);
        assert_eq!(leaves[0].limit.namespace().as_ref(), "scopegate");
        assert_eq!(leaves[1].limit.seconds(), 7_200);
        assert_eq!(leaves[0].limit.variables().len(), 1);
        assert!(leaves[1].limit.variables().is_empty());
    }

    #[test]
    fn a_limit_applies_to_its_exact_path_only() {
        let (_, leaves) = parse(FILE).expect("parses");
        let subject = &leaves[0].limit;
        let tool = [
            ("gateway", "saas"),
            ("server", "ops-console"),
            ("budget", "tool:admin_report:60s"),
        ];
        let mut alice = tool.to_vec();
        alice.push(("subject", "alice"));
        assert!(subject.applies(&ctx(&alice)));
        assert!(!subject.applies(&ctx(&tool)), "shorter");
        let mut longer = alice.clone();
        longer.push(("extra", "x"));
        assert!(!subject.applies(&ctx(&longer)), "longer");
        let mut other = alice.clone();
        other[1] = ("server", "support-assistant");
        assert!(!subject.applies(&ctx(&other)), "another server");
        let mut client = tool.to_vec();
        client.push(("client_id", "alice"));
        assert!(!subject.applies(&ctx(&client)), "another key");
        let server = [
            ("gateway", "saas"),
            ("server", "ops-console"),
            ("budget", "server:7200s"),
        ];
        assert!(leaves[1].limit.applies(&ctx(&server)));
        assert!(!leaves[1].limit.applies(&ctx(&alice)));
    }

    #[test]
    fn a_fixed_value_wins_over_the_valueless_key() {
        let text = r#"
domain: d
descriptors:
  - key: subject
    value: root
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: subject
    rate_limit: {unit: second, requests_per_unit: 9}
"#;
        let (_, leaves) = parse(text).expect("parses");
        assert!(leaves[0].limit.applies(&ctx(&[("subject", "root")])));
        assert!(!leaves[1].limit.applies(&ctx(&[("subject", "root")])));
        assert!(leaves[1].limit.applies(&ctx(&[("subject", "alice")])));
    }

    #[test]
    fn unknown_fields_and_empty_limits_are_refused_by_name() {
        let e = parse("domain: d\ndescriptors: [{key: k, shadow_mode: true}]\n").unwrap_err();
        assert!(e.contains("shadow_mode"), "{e}");
        let e = parse("domain: d\ndescriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 0}}]\n")
            .unwrap_err();
        assert!(e.contains("requests_per_unit"), "{e}");
        let e = parse(
            "domain: d\ndescriptors: [{key: k, rate_limit: {unit: week, requests_per_unit: 1}}]\n",
        )
        .unwrap_err();
        assert!(e.contains("week"), "{e}");
    }
}
