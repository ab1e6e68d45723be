//! Each function's IAM policy, read from template.yaml's `Policies` and
//! resolved to the local names, and IAM's evaluation of a request against
//! it.
//!
//! What is read: inline statements (`Effect`, `Action`, `Resource`,
//! `Condition`), with `!Ref`, `!GetAtt` and `!Sub` (short and long forms)
//! resolved; and the SAM policy templates paygate uses, expanded as SAM
//! publishes them (`samtranslator/policy_templates_data/policy_templates.json`
//! in aws/serverless-application-model). Anything else (a managed policy by
//! name, `NotAction`, an unknown template or condition) is an error when
//! the template is read, or a refusal when a request meets it: the local
//! check never allows what it does not understand.

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::template::TemplateError;

/// moto's account, in which the local queues and secrets live.
pub const ACCOUNT: &str = "123456789012";
pub const PARTITION: &str = "aws";

/// The local names of the template's resources, which `!Ref`, `!GetAtt`
/// and `!Sub` resolve to.
#[derive(Debug, Clone)]
pub struct LocalNames {
    pub region: String,
    pub account: String,
    /// Logical id to local name: tables and queues.
    pub resources: BTreeMap<String, String>,
    /// The secret name prefix the functions use here, in place of the
    /// template's `PAYGATE_SECRET_PREFIX` (tests give each run its own).
    pub secret_prefix: Option<String>,
}

impl LocalNames {
    /// `make dev`'s and `make bench`'s names (devstack's bootstrap).
    pub fn dev() -> LocalNames {
        LocalNames {
            region: crate::REGION.to_string(),
            account: ACCOUNT.to_string(),
            resources: BTreeMap::from([
                ("PaymentsTable".to_string(), crate::TABLE.to_string()),
                ("TopUpQueue".to_string(), crate::TOPUP_QUEUE.to_string()),
                (
                    "TopUpDeadLetterQueue".to_string(),
                    crate::TOPUP_DLQ.to_string(),
                ),
                ("EventsQueue".to_string(), crate::EVENTS_QUEUE.to_string()),
                (
                    "EventsDeadLetterQueue".to_string(),
                    crate::EVENTS_DLQ.to_string(),
                ),
            ]),
            secret_prefix: None,
        }
    }

    pub fn table_arn(&self, table: &str) -> String {
        format!(
            "arn:{PARTITION}:dynamodb:{}:{}:table/{table}",
            self.region, self.account
        )
    }

    pub fn queue_arn(&self, queue: &str) -> String {
        format!(
            "arn:{PARTITION}:sqs:{}:{}:{queue}",
            self.region, self.account
        )
    }

    pub fn secret_arn(&self, name_with_suffix: &str) -> String {
        format!(
            "arn:{PARTITION}:secretsmanager:{}:{}:secret:{name_with_suffix}",
            self.region, self.account
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One condition of a statement: `ForAllValues:StringLike` on
/// `dynamodb:LeadingKeys` with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub conditions: Vec<Condition>,
}

/// What one request asks IAM: an action on a resource, with the request's
/// condition keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `dynamodb:Query`.
    pub action: String,
    /// The resource's ARN.
    pub resource: String,
    /// `dynamodb:LeadingKeys`: the partition key values the request names
    /// (None where the request names none, as a Scan).
    pub leading_keys: Option<Vec<String>>,
}

/// IAM's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No statement allows it (IAM's implicit deny).
    NotAllowed,
    /// A statement denies it.
    Denied,
}

/// Every function's policy, by binary name.
#[derive(Debug, Clone)]
pub struct Policies {
    pub names: LocalNames,
    functions: BTreeMap<String, Vec<Statement>>,
    /// Local table name to its partition key attribute.
    pub partition_keys: BTreeMap<String, String>,
}

impl Policies {
    /// The policies of every `AWS::Serverless::Function` in `template`
    /// (template.yaml's text), resolved to `names`.
    pub fn from_template(template: &str, names: &LocalNames) -> Result<Policies, TemplateError> {
        let doc: Value = serde_yaml::from_str(template)?;
        let resources = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| shape("no Resources"))?;
        let template_prefix = doc
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(|v| v.get("PAYGATE_SECRET_PREFIX"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let resolver = Resolver {
            names,
            kinds: resources
                .iter()
                .filter_map(|(id, r)| {
                    Some((
                        id.as_str()?.to_string(),
                        r.get("Type")?.as_str()?.to_string(),
                    ))
                })
                .collect(),
        };
        let parsed = crate::template::Template::parse(template)?;
        let partition_keys = parsed
            .tables
            .iter()
            .filter_map(|t| {
                let name = names.resources.get(&t.logical_id)?;
                let hash = t.key_schema.iter().find(|k| k.key_type == "HASH")?;
                Some((name.clone(), hash.attribute.clone()))
            })
            .collect();
        let mut functions = BTreeMap::new();
        for (id, resource) in resources {
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let id = id.as_str().unwrap_or("?");
            let binary = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .ok_or_else(|| shape(format!("{id}: no Metadata.BuildProperties.Binary")))?;
            let policies = resource
                .get("Properties")
                .and_then(|p| p.get("Policies"))
                .unwrap_or(&Value::Null);
            let mut statements = Vec::new();
            let list: Vec<&Value> = match policies {
                Value::Null => vec![],
                Value::Sequence(items) => items.iter().collect(),
                other => vec![other],
            };
            for policy in list {
                statements.extend(
                    resolver
                        .policy(policy)
                        .map_err(|e| shape(format!("{id} Policies: {e}")))?,
                );
            }
            if let (Some(from), Some(to)) = (&template_prefix, &names.secret_prefix) {
                for s in &mut statements {
                    for r in &mut s.resources {
                        *r = rename_secret(r, from, to);
                    }
                }
            }
            functions.insert(binary.to_string(), statements);
        }
        Ok(Policies {
            names: names.clone(),
            functions,
            partition_keys,
        })
    }

    /// Whether `principal` (an access key id) names a function.
    pub fn is_function(&self, principal: &str) -> bool {
        self.functions.contains_key(principal)
    }

    pub fn functions(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    pub fn statements(&self, function: &str) -> &[Statement] {
        self.functions.get(function).map_or(&[], Vec::as_slice)
    }

    /// IAM's evaluation of one check for `function`: an explicit deny
    /// wins, then any allow, else the implicit deny.
    pub fn decide(&self, function: &str, check: &Check) -> Decision {
        let applies = |s: &&Statement| {
            s.actions.iter().any(|a| action_matches(a, &check.action))
                && s.resources.iter().any(|r| wildcard(r, &check.resource))
                && s.conditions.iter().all(|c| condition_holds(c, check))
        };
        let statements = self.statements(function);
        if statements
            .iter()
            .filter(|s| s.effect == Effect::Deny)
            .any(|s| applies(&s))
        {
            return Decision::Denied;
        }
        if statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .any(|s| applies(&s))
        {
            return Decision::Allowed;
        }
        Decision::NotAllowed
    }
}

fn shape(msg: impl Into<String>) -> TemplateError {
    TemplateError::Shape(msg.into())
}

/// `...:secret:paygate/x-*` becomes `...:secret:<local prefix>x-*`.
fn rename_secret(resource: &str, from: &str, to: &str) -> String {
    match resource.split_once(":secret:") {
        Some((head, name)) if name.starts_with(from) => {
            format!("{head}:secret:{to}{}", &name[from.len()..])
        }
        _ => resource.to_string(),
    }
}

/// IAM action names are case-insensitive; both may hold `*` and `?`.
fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// IAM's wildcards: `*` any run of characters, `?` any one character.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The conditions paygate's template uses: string operators, with the
/// `ForAllValues:`/`ForAnyValue:` set qualifiers, on `dynamodb:LeadingKeys`.
/// Anything else does not hold (so an Allow with it allows nothing).
fn condition_holds(c: &Condition, check: &Check) -> bool {
    if !c.key.eq_ignore_ascii_case("dynamodb:LeadingKeys") {
        return false;
    }
    let (qualifier, operator) = match c.operator.split_once(':') {
        Some((q, o)) => (Some(q), o),
        None => (None, c.operator.as_str()),
    };
    let one = |v: &str| match operator {
        "StringEquals" => c.values.iter().any(|x| x == v),
        "StringLike" => c.values.iter().any(|x| wildcard(x, v)),
        "StringNotEquals" => c.values.iter().all(|x| x != v),
        "StringNotLike" => c.values.iter().all(|x| !wildcard(x, v)),
        _ => false,
    };
    let known = matches!(
        operator,
        "StringEquals" | "StringLike" | "StringNotEquals" | "StringNotLike"
    );
    if !known {
        return false;
    }
    let keys = check.leading_keys.as_deref();
    match qualifier {
        // True for an empty set, as IAM has it (the key absent included).
        Some("ForAllValues") => keys.unwrap_or(&[]).iter().all(|k| one(k)),
        Some("ForAnyValue") => keys.unwrap_or(&[]).iter().any(|k| one(k)),
        // A single-valued operator on a multi-valued key: every value.
        None => keys.is_some_and(|k| !k.is_empty() && k.iter().all(|v| one(v))),
        Some(_) => false,
    }
}

/// Resolves intrinsic functions to local names.
struct Resolver<'a> {
    names: &'a LocalNames,
    /// Logical id to resource type.
    kinds: BTreeMap<String, String>,
}

impl Resolver<'_> {
    fn policy(&self, policy: &Value) -> Result<Vec<Statement>, String> {
        let Value::Mapping(map) = policy else {
            return Err(format!(
                "{policy:?}: managed policies by name are not modelled locally"
            ));
        };
        if let Some(statements) = map.get("Statement") {
            let list: Vec<&Value> = match statements {
                Value::Sequence(s) => s.iter().collect(),
                other => vec![other],
            };
            return list.into_iter().map(|s| self.statement(s)).collect();
        }
        let (name, params) = map
            .iter()
            .next()
            .ok_or_else(|| "an empty policy".to_string())?;
        let name = name.as_str().unwrap_or("?");
        let param = |p: &str| -> Result<String, String> {
            let v = params.get(p).ok_or_else(|| format!("{name} without {p}"))?;
            let mut all = self.resolve(v)?;
            if all.len() != 1 {
                return Err(format!("{name}: {p} must be one value"));
            }
            Ok(all.remove(0))
        };
        sam_template(name, self.names, &param)
    }

    fn statement(&self, s: &Value) -> Result<Statement, String> {
        for unsupported in ["NotAction", "NotResource", "Principal", "NotPrincipal"] {
            if s.get(unsupported).is_some() {
                return Err(format!("{unsupported} is not modelled locally"));
            }
        }
        let effect = match s.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            other => return Err(format!("Effect {other:?}")),
        };
        let actions = self.resolve(s.get("Action").ok_or("a statement without Action")?)?;
        let resources = self.resolve(s.get("Resource").ok_or("a statement without Resource")?)?;
        let mut conditions = Vec::new();
        if let Some(Value::Mapping(ops)) = s.get("Condition") {
            for (op, keys) in ops {
                let operator = op.as_str().ok_or("a condition operator")?.to_string();
                let Value::Mapping(keys) = keys else {
                    return Err(format!("{operator}: not a map"));
                };
                for (key, values) in keys {
                    conditions.push(Condition {
                        operator: operator.clone(),
                        key: key.as_str().ok_or("a condition key")?.to_string(),
                        values: self.resolve(values)?,
                    });
                }
            }
        }
        Ok(Statement {
            effect,
            actions,
            resources,
            conditions,
        })
    }

    /// A value of the template as the strings it stands for.
    fn resolve(&self, v: &Value) -> Result<Vec<String>, String> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Number(n) => Ok(vec![n.to_string()]),
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.extend(self.resolve(i)?);
                }
                Ok(out)
            }
            Value::Tagged(t) => self
                .intrinsic(&t.tag.to_string(), &t.value)
                .map(|s| vec![s]),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, inner) = m.iter().next().ok_or("empty")?;
                let tag = match k.as_str() {
                    Some("Ref") => "!Ref",
                    Some("Fn::GetAtt") => "!GetAtt",
                    Some("Fn::Sub") => "!Sub",
                    other => return Err(format!("{other:?} is not modelled locally")),
                };
                self.intrinsic(tag, inner).map(|s| vec![s])
            }
            other => Err(format!("{other:?} is not modelled locally")),
        }
    }

    fn intrinsic(&self, tag: &str, v: &Value) -> Result<String, String> {
        match tag {
            "!Ref" => self.reference(v.as_str().ok_or("!Ref of a non-string")?),
            "!GetAtt" => match v {
                Value::String(s) => {
                    let (id, attr) = s.split_once('.').ok_or("!GetAtt without .Attribute")?;
                    self.attribute(id, attr)
                }
                Value::Sequence(parts) => {
                    let id = parts.first().and_then(Value::as_str).ok_or("!GetAtt id")?;
                    let attr = parts.get(1).and_then(Value::as_str).ok_or("!GetAtt attr")?;
                    self.attribute(id, attr)
                }
                _ => Err("!GetAtt of a non-string".into()),
            },
            "!Sub" => match v {
                Value::String(s) => self.sub(s, &BTreeMap::new()),
                Value::Sequence(parts) => {
                    let text = parts.first().and_then(Value::as_str).ok_or("!Sub text")?;
                    let mut vars = BTreeMap::new();
                    if let Some(Value::Mapping(m)) = parts.get(1) {
                        for (k, v) in m {
                            let mut r = self.resolve(v)?;
                            if r.len() != 1 {
                                return Err("a !Sub variable must be one value".into());
                            }
                            vars.insert(k.as_str().unwrap_or("").to_string(), r.remove(0));
                        }
                    }
                    self.sub(text, &vars)
                }
                _ => Err("!Sub of a non-string".into()),
            },
            other => Err(format!("{other} is not modelled locally")),
        }
    }

    fn sub(&self, text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or("an unclosed ${ in !Sub")?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if let Some((id, attr)) = name
                .split_once('.')
                .filter(|(id, _)| !id.starts_with("AWS::"))
            {
                out.push_str(&self.attribute(id, attr)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn local(&self, id: &str) -> Result<&str, String> {
        self.names
            .resources
            .get(id)
            .map(String::as_str)
            .ok_or_else(|| format!("{id} has no local name"))
    }

    fn reference(&self, id: &str) -> Result<String, String> {
        match id {
            "AWS::Partition" => Ok(PARTITION.into()),
            "AWS::Region" => Ok(self.names.region.clone()),
            "AWS::AccountId" => Ok(self.names.account.clone()),
            "AWS::URLSuffix" => Ok("amazonaws.com".into()),
            _ => match self.kinds.get(id).map(String::as_str) {
                Some("AWS::DynamoDB::Table") => Ok(self.local(id)?.to_string()),
                Some("AWS::SQS::Queue") => Ok(format!(
                    "https://sqs.{}.amazonaws.com/{}/{}",
                    self.names.region,
                    self.names.account,
                    self.local(id)?
                )),
                _ => Err(format!("!Ref {id} is not modelled locally")),
            },
        }
    }

    fn attribute(&self, id: &str, attr: &str) -> Result<String, String> {
        match (self.kinds.get(id).map(String::as_str), attr) {
            (Some("AWS::DynamoDB::Table"), "Arn") => Ok(self.names.table_arn(self.local(id)?)),
            (Some("AWS::SQS::Queue"), "Arn") => Ok(self.names.queue_arn(self.local(id)?)),
            (Some("AWS::SQS::Queue"), "QueueName") => Ok(self.local(id)?.to_string()),
            _ => Err(format!("!GetAtt {id}.{attr} is not modelled locally")),
        }
    }
}

/// The SAM policy templates paygate may use, as SAM expands them: the
/// `Definition` of each in aws/serverless-application-model's
/// `samtranslator/policy_templates_data/policy_templates.json` (read at
/// commit 7000d0a3b0e5e0d9fca014ce135850718aad1290), its `${AWS::...}`
/// resolved to the local account and region.
fn sam_template(
    name: &str,
    names: &LocalNames,
    param: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Vec<Statement>, String> {
    let allow = |actions: &[&str], resources: Vec<String>| {
        vec![Statement {
            effect: Effect::Allow,
            actions: actions.iter().map(|a| a.to_string()).collect(),
            resources,
            conditions: vec![],
        }]
    };
    let table = |t: &str| {
        vec![
            names.table_arn(t),
            format!("{}/index/*", names.table_arn(t)),
        ]
    };
    match name {
        "DynamoDBCrudPolicy" => Ok(allow(
            &[
                "dynamodb:GetItem",
                "dynamodb:DeleteItem",
                "dynamodb:PutItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
                "dynamodb:ConditionCheckItem",
            ],
            table(&param("TableName")?),
        )),
        "DynamoDBReadPolicy" => Ok(allow(
            &[
                "dynamodb:GetItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
            ],
            table(&param("TableName")?),
        )),
        "DynamoDBWritePolicy" => Ok(allow(
            &[
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
            ],
            table(&param("TableName")?),
        )),
        "SQSSendMessagePolicy" => Ok(allow(
            &["sqs:SendMessage*"],
            vec![names.queue_arn(&param("QueueName")?)],
        )),
        "SQSPollerPolicy" => Ok(allow(
            &[
                "sqs:ChangeMessageVisibility",
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:DeleteMessage",
                "sqs:DeleteMessageBatch",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
            vec![names.queue_arn(&param("QueueName")?)],
        )),
        "AWSSecretsManagerGetSecretValuePolicy" => Ok(allow(
            &["secretsmanager:GetSecretValue"],
            vec![param("SecretArn")?],
        )),
        other => Err(format!(
            "the SAM policy template {other} is not modelled locally"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> LocalNames {
        let mut n = LocalNames::dev();
        n.resources.insert("Other".into(), "other-table".into());
        n
    }

    const TEMPLATE: &str = r#"
Globals:
  Function:
    Environment:
      Variables:
        PAYGATE_SECRET_PREFIX: paygate/
Resources:
  PaymentsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema:
        - AttributeName: pk
          KeyType: HASH
  TopUpQueue:
    Type: AWS::SQS::Queue
  Fn:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: fn-one
    Properties:
      Policies:
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, "dynamodb:Update*"]
              Resource: !GetAtt PaymentsTable.Arn
            - Effect: Allow
              Action: dynamodb:Query
              Resource: !Sub ${PaymentsTable.Arn}/index/GSI1
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource: !Sub arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:paygate/api-keys-??????
            - Effect: Deny
              Action: dynamodb:UpdateItem
              Resource: {"Fn::GetAtt": [PaymentsTable, Arn]}
              Condition:
                ForAnyValue:StringLike:
                  dynamodb:LeadingKeys: ["LOCK#*"]
        - SQSSendMessagePolicy:
            QueueName: !GetAtt TopUpQueue.QueueName
  Health:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: fn-health
    Properties:
      Policies:
        - Statement:
            - Effect: Allow
              Action: dynamodb:UpdateItem
              Resource: !GetAtt PaymentsTable.Arn
              Condition:
                ForAllValues:StringLike:
                  dynamodb:LeadingKeys:
                    - HEALTH#*
        - DynamoDBReadPolicy:
            TableName: !Ref PaymentsTable
"#;

    fn check(action: &str, resource: &str, keys: &[&str]) -> Check {
        Check {
            action: action.into(),
            resource: resource.into(),
            leading_keys: Some(keys.iter().map(|k| k.to_string()).collect()),
        }
    }

    #[test]
    fn statements_resolve_and_evaluate_as_iam_does() {
        let n = names();
        let p = Policies::from_template(TEMPLATE, &n).unwrap();
        let table = n.table_arn("paygate-local");
        assert_eq!(p.partition_keys["paygate-local"], "pk");
        assert_eq!(
            p.decide("fn-one", &check("dynamodb:GetItem", &table, &["PAY#1"])),
            Decision::Allowed
        );
        // Actions are case-insensitive and take wildcards.
        assert_eq!(
            p.decide("fn-one", &check("DynamoDB:updateitem", &table, &["PAY#1"])),
            Decision::Allowed
        );
        // An explicit deny wins.
        assert_eq!(
            p.decide("fn-one", &check("dynamodb:UpdateItem", &table, &["LOCK#1"])),
            Decision::Denied
        );
        assert_eq!(
            p.decide("fn-one", &check("dynamodb:Query", &table, &[])),
            Decision::NotAllowed
        );
        let gsi1 = format!("{table}/index/GSI1");
        let gsi2 = format!("{table}/index/GSI2");
        assert_eq!(
            p.decide("fn-one", &check("dynamodb:Query", &gsi1, &[])),
            Decision::Allowed
        );
        assert_eq!(
            p.decide("fn-one", &check("dynamodb:Query", &gsi2, &[])),
            Decision::NotAllowed
        );
        // The secret's random suffix is six characters.
        let secret = n.secret_arn("paygate/api-keys-AbC123");
        assert_eq!(
            p.decide(
                "fn-one",
                &check("secretsmanager:GetSecretValue", &secret, &[])
            ),
            Decision::Allowed
        );
        let longer = n.secret_arn("paygate/api-keys-old-AbC123");
        assert_eq!(
            p.decide(
                "fn-one",
                &check("secretsmanager:GetSecretValue", &longer, &[])
            ),
            Decision::NotAllowed
        );
        // SQSSendMessagePolicy: sqs:SendMessage* on the queue.
        let queue = n.queue_arn("paygate-topups");
        assert_eq!(
            p.decide("fn-one", &check("sqs:SendMessage", &queue, &[])),
            Decision::Allowed
        );
        assert_eq!(
            p.decide("fn-one", &check("sqs:ReceiveMessage", &queue, &[])),
            Decision::NotAllowed
        );
        assert_eq!(
            p.decide("nobody", &check("sqs:SendMessage", &queue, &[])),
            Decision::NotAllowed
        );
    }

    #[test]
    fn leading_keys_and_sam_templates() {
        let n = names();
        let p = Policies::from_template(TEMPLATE, &n).unwrap();
        let table = n.table_arn("paygate-local");
        let update =
            |keys: &[&str]| p.decide("fn-health", &check("dynamodb:UpdateItem", &table, keys));
        assert_eq!(update(&["HEALTH#casino"]), Decision::Allowed);
        assert_eq!(update(&["SESSION#casino"]), Decision::NotAllowed);
        assert_eq!(update(&["HEALTH#a", "PAY#1"]), Decision::NotAllowed);
        // DynamoDBReadPolicy covers the table and every index, reads only.
        let any_index = format!("{table}/index/GSI3");
        assert_eq!(
            p.decide("fn-health", &check("dynamodb:Query", &any_index, &[])),
            Decision::Allowed
        );
        assert_eq!(
            p.decide(
                "fn-health",
                &check("dynamodb:PutItem", &table, &["HEALTH#x"])
            ),
            Decision::NotAllowed
        );
    }

    #[test]
    fn local_secret_prefixes_replace_the_templates() {
        let mut n = names();
        n.secret_prefix = Some("paygate-test-1/".into());
        let p = Policies::from_template(TEMPLATE, &n).unwrap();
        let local = n.secret_arn("paygate-test-1/api-keys-AbC123");
        let deployed = n.secret_arn("paygate/api-keys-AbC123");
        assert_eq!(
            p.decide(
                "fn-one",
                &check("secretsmanager:GetSecretValue", &local, &[])
            ),
            Decision::Allowed
        );
        assert_eq!(
            p.decide(
                "fn-one",
                &check("secretsmanager:GetSecretValue", &deployed, &[])
            ),
            Decision::NotAllowed
        );
    }

    #[test]
    fn what_is_not_modelled_is_an_error() {
        let managed = TEMPLATE.replace(
            "        - SQSSendMessagePolicy:\n            QueueName: !GetAtt TopUpQueue.QueueName\n",
            "        - AmazonDynamoDBFullAccess\n",
        );
        assert!(Policies::from_template(&managed, &names()).is_err());
        let unknown = TEMPLATE.replace("SQSSendMessagePolicy", "SQSSendEverythingPolicy");
        assert!(Policies::from_template(&unknown, &names()).is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("a-??????", "a-123456"));
        assert!(!wildcard("a-??????", "a-12345"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("abc", "abcd"));
        assert!(wildcard("x*y*z", "x1y2y3z"));
    }

    #[test]
    fn the_repository_template_resolves() {
        let text = std::fs::read_to_string(crate::template::default_path()).unwrap();
        let p = Policies::from_template(&text, &LocalNames::dev()).unwrap();
        let template = crate::Template::parse(&text).unwrap();
        for f in &template.functions {
            assert!(p.is_function(&f.binary), "{} has no policy entry", f.binary);
        }
    }
}
