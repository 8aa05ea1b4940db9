//! `make oci`: the filter's OCI image layout, checked with a real OCI tool (skopeo), unpacked and
//! compared byte for byte with the built `.wasm`; the same `.wasm` gives the same digest.

use scopegate_tests::envoy::WASM;
use scopegate_tests::procs::log_dir;
use scopegate_tests::{built, repo_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOL: &str = "target/debug/wasm-oci";
const MADE: &str = "target/oci/scopegate-filter";
const TAG: &str = "0.1.0";

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("skopeo is required (make skopeo: apt-get install -y skopeo): {e}")
        });
    assert!(
        out.status.success(),
        "skopeo {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs the tool into `dir` (and `dir.tar`); returns the manifest digest it printed.
fn build_image(dir: &Path) -> String {
    let tar = dir.with_extension("tar");
    let out = Command::new(built(TOOL, "make oci"))
        .arg("--wasm")
        .arg(built(WASM, "make wasm"))
        .arg("--out")
        .arg(dir)
        .arg("--tar")
        .arg(&tar)
        .args(["--tag", TAG])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("manifest digest: "))
        .unwrap_or_else(|| panic!("no digest printed:\n{stdout}"))
        .to_string()
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_layout_is_an_image_skopeo_reads_with_plugin_wasm_in_its_only_layer() {
    let work = log_dir("oci_image");
    let dir = work.join("a");
    let digest = build_image(&dir);

    // Deterministic: a second run gives the same bytes, and `make oci`'s output is current.
    let again = work.join("b");
    assert_eq!(build_image(&again), digest);
    assert_eq!(
        files(&dir),
        files(&again),
        "two runs wrote different layouts"
    );
    assert_eq!(
        std::fs::read(dir.with_extension("tar")).unwrap(),
        std::fs::read(again.with_extension("tar")).unwrap()
    );
    let made = repo_root().join(MADE);
    let index: Value = serde_json::from_slice(
        &std::fs::read(made.join("index.json"))
            .unwrap_or_else(|e| panic!("{MADE}: run make oci: {e}")),
    )
    .unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        digest.as_str(),
        "{MADE} is stale: run make oci"
    );

    // skopeo reads the layout: one tar+gzip layer, the digest the tool printed.
    let oci_ref = format!("oci:{}:{TAG}", dir.display());
    let inspect: Value = serde_json::from_str(&skopeo(&["inspect", &oci_ref])).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str(), "{inspect}");
    let layers = inspect["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 1, "{inspect}");
    let raw: Value = serde_json::from_str(&skopeo(&["inspect", "--raw", &oci_ref])).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(raw["layers"].as_array().map(Vec::len), Some(1), "{raw}");
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(raw["layers"][0]["digest"], layers[0]);

    // Copy out of the layout and out of the archive; unpack the layer; compare the bytes.
    let wasm = std::fs::read(built(WASM, "make wasm")).unwrap();
    for (source, name) in [
        (oci_ref.clone(), "copied"),
        (
            format!("oci-archive:{}:{TAG}", dir.with_extension("tar").display()),
            "copied-archive",
        ),
    ] {
        let dest = work.join(name);
        let _ = std::fs::remove_dir_all(&dest);
        skopeo(&[
            "copy",
            "--quiet",
            &source,
            &format!("dir:{}", dest.display()),
        ]);
        let layer_hex = layers[0].as_str().unwrap().trim_start_matches("sha256:");
        let layer = dest.join(layer_hex);
        assert!(
            layer.exists(),
            "{source}: no layer blob {layer_hex} in {}",
            dest.display()
        );
        assert_eq!(
            sha256_hex(&layer),
            layer_hex,
            "the layer blob is named by its sha256"
        );
        let unpacked = work.join(format!("{name}-layer"));
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked).unwrap();
        let out = Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(&unpacked)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entries: Vec<_> = std::fs::read_dir(&unpacked)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            entries,
            ["plugin.wasm"],
            "{source}: the layer holds plugin.wasm only"
        );
        let got = std::fs::read(unpacked.join("plugin.wasm")).unwrap();
        assert!(got == wasm, "{source}: plugin.wasm differs from {WASM}");
    }
}
