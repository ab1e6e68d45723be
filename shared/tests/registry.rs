//! The provider registry against the tree: for every provider it
//! describes, each piece of docs/adding-a-provider.md's checklist is there.
//! A provider added to the enum and the registry but missing its folder,
//! sandbox module, route, API description, sample event, function or local
//! secret fails here, naming what is missing.

use std::path::{Path, PathBuf};

use shared::payment::Provider;
use shared::providers::description::Description;
use shared::providers::registry;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_default()
}

/// What of the checklist is missing for one provider.
fn missing(d: &Description, template: &devstack::Template) -> Vec<String> {
    let name = d.provider.as_str();
    let route = d.route;
    let variant = format!("Provider::{:?}", d.provider);
    let mut missing = Vec::new();
    let mut need = |ok: bool, what: String| {
        if !ok {
            missing.push(what);
        }
    };

    need(
        read(&format!("shared/src/providers/{name}/mod.rs")).contains("pub const DESCRIPTION"),
        format!("shared/src/providers/{name}/mod.rs with its DESCRIPTION"),
    );
    need(
        root()
            .join(format!("shared/src/providers/{name}/wire.rs"))
            .is_file(),
        format!("shared/src/providers/{name}/wire.rs (its own request, reply and callback types)"),
    );
    need(
        root()
            .join(format!("shared/tests/fixtures/{name}/SOURCES.md"))
            .is_file(),
        format!("shared/tests/fixtures/{name}/SOURCES.md (the public sources of its fixtures)"),
    );
    let sandbox = read("infra/sandbox/src/lib.rs");
    let module = read(&format!("infra/sandbox/src/{name}.rs"));
    need(
        sandbox.contains(&format!("pub mod {name};"))
            && sandbox.contains(&format!("self.{name}.clone()")),
        format!("infra/sandbox/src/{name}.rs, declared in the sandbox's lib.rs and in its providers' table"),
    );
    need(
        module.contains(&format!("sandbox_provider!(\"{name}\"")),
        format!("the sandbox module's SandboxProvider (`kit::sandbox_provider!({name:?} ...)`)"),
    );
    need(
        module.contains(&format!("\"/_sandbox/{route}\"")),
        format!("the sandbox's controls under /_sandbox/{route}"),
    );
    need(
        read("infra/sandbox/src/trigger.rs").contains(&format!("\"{name}\"")),
        format!("{name:?} among the sandbox trigger's providers"),
    );
    let path = format!("/webhooks/{route}");
    let binary = format!("webhook-{route}");
    need(
        template.functions.iter().any(|f| {
            f.binary == binary
                && f.routes.iter().any(|r| {
                    r.method == "POST"
                        && (r.path == path || r.path.starts_with(&format!("{path}/")))
                })
        }),
        format!("template.yaml: function {binary} with POST {path}"),
    );
    let openapi = read("openapi.yaml");
    need(
        openapi.contains(&format!("\n  {path}:")) || openapi.contains(&format!("\n  {path}/")),
        format!("openapi.yaml: the path {path}"),
    );
    need(
        root().join(format!("events/{binary}.json")).is_file(),
        format!("events/{binary}.json"),
    );
    need(
        read(&format!("functions/{binary}/src/main.rs")).contains(&variant),
        format!("functions/{binary}/src/main.rs handling {variant}"),
    );
    need(
        root()
            .join(format!("infra/local/secrets/{}.json", d.secret))
            .is_file(),
        format!("infra/local/secrets/{}.json", d.secret),
    );
    need(
        shared::provider_health::PROVIDERS.contains(&name),
        format!("{name} among health's providers"),
    );
    missing
}

#[test]
fn every_provider_in_the_registry_has_every_piece_of_the_checklist() {
    let template = devstack::Template::load(&root().join("template.yaml")).unwrap();
    let checklist = read("docs/adding-a-provider.md");
    assert!(
        !checklist.is_empty(),
        "docs/adding-a-provider.md is the checklist"
    );
    let mut problems = Vec::new();
    for d in registry::all() {
        for m in missing(d, &template) {
            problems.push(format!("{}: {m}", d.provider));
        }
    }
    assert!(problems.is_empty(), "missing:\n{}", problems.join("\n"));
    assert_eq!(registry::all().count(), Provider::ALL.len());
}

#[test]
fn the_check_names_what_a_provider_lacks() {
    // A description whose route and secret lead nowhere: every piece that
    // depends on them is reported, so the check above can fail.
    let template = devstack::Template::load(&root().join("template.yaml")).unwrap();
    let ghost = Description {
        route: "ghost",
        secret: "ghost",
        ..*registry::describe(Provider::Qpay)
    };
    let lacks = missing(&ghost, &template);
    for piece in [
        "template.yaml: function webhook-ghost",
        "openapi.yaml: the path /webhooks/ghost",
        "events/webhook-ghost.json",
        "functions/webhook-ghost/src/main.rs",
        "infra/local/secrets/ghost.json",
        "the sandbox's controls under /_sandbox/ghost",
    ] {
        assert!(
            lacks.iter().any(|l| l.starts_with(piece)),
            "{piece} not reported: {lacks:?}"
        );
    }
}

/// Outside its folder, the registry and the `Provider` enum itself, no
/// code in `shared/src` names a provider: it reads the description.
#[test]
fn no_code_outside_a_providers_folder_names_it() {
    let variants: Vec<String> = Provider::ALL
        .iter()
        .map(|p| format!("Provider::{p:?}"))
        .collect();
    let mut named = Vec::new();
    let mut stack = vec![root().join("shared/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .to_string();
            let own = Provider::ALL
                .iter()
                .any(|p| rel.starts_with(&format!("shared/src/providers/{}/", p.as_str())));
            if path.is_dir() {
                stack.push(path);
            } else if rel.ends_with(".rs")
                && !own
                && rel != "shared/src/payment.rs"
                && rel != "shared/src/providers/registry.rs"
            {
                let text = read(&rel);
                // Unit tests may name providers; the code before them may not.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for v in &variants {
                    if code.contains(v.as_str()) {
                        named.push(format!("{rel}: {v}"));
                    }
                }
            }
        }
    }
    assert!(
        named.is_empty(),
        "providers named outside their folders:\n{}",
        named.join("\n")
    );
}

/// Every recorded example names where it came from: each file in a
/// provider's fixtures folder is listed in that folder's SOURCES.md.
#[test]
fn every_fixture_is_in_its_sources() {
    let fixtures = root().join("shared/tests/fixtures");
    let mut unlisted = Vec::new();
    for folder in std::fs::read_dir(&fixtures).unwrap() {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        let sources = std::fs::read_to_string(folder.join("SOURCES.md")).unwrap_or_default();
        for file in std::fs::read_dir(&folder).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().to_string();
            if name != "SOURCES.md" && !sources.contains(&format!("`{name}`")) {
                let provider = folder.file_name().unwrap_or_default().to_string_lossy();
                unlisted.push(format!("shared/tests/fixtures/{provider}/{name}"));
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "fixtures without a source:\n{}",
        unlisted.join("\n")
    );
}
