//! The image's blobs (layer, config, manifest) and the OCI layout files that name them.

use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The file name both fetchers look for in the last layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// Every timestamp in the image: the epoch, so the bytes depend only on the `.wasm`.
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// A built image: every blob, and the files of the layout.
pub struct Image {
    /// `(digest, bytes)` of each blob, sorted by digest.
    pub blobs: Vec<(String, Vec<u8>)>,
    pub index: Vec<u8>,
    pub manifest_digest: String,
    pub wasm_sha256: String,
}

pub fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in d {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256(bytes))
}

/// A ustar header with fixed owner, mode and time.
fn header(path: &str, size: u64, mode: u32) -> std::io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// A tar of `files` (already in the order wanted).
fn tar_of(files: &[(String, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let h = header(path, bytes.len() as u64, 0o644)?;
        b.append(&h, *bytes)?;
    }
    b.into_inner()
}

fn json_bytes(v: &serde_json::Value) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(std::io::Error::other)
}

impl Image {
    pub fn build(wasm: &[u8], tag: &str) -> std::io::Result<Image> {
        let layer_tar = tar_of(&[(PLUGIN_FILE.to_string(), wasm)])?;
        // gzip with no name and mtime 0 (GzBuilder's defaults), so the layer is reproducible.
        let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
        gz.write_all(&layer_tar)?;
        let layer = gz.finish()?;

        let config = json_bytes(&json!({
            "created": EPOCH,
            // GOOS/GOARCH spelling of what the module targets; the fetchers do not select by it.
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest(&layer_tar)]},
            "history": [{"created": EPOCH, "created_by": "scopegate wasm-oci", "comment": PLUGIN_FILE}],
        }))?;
        let manifest = json_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": digest(&layer), "size": layer.len()}],
            "annotations": {"org.opencontainers.image.title": "scopegate-filter", "org.opencontainers.image.created": EPOCH},
        }))?;
        let manifest_digest = digest(&manifest);
        let index = json_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [{
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        }))?;
        let mut blobs = vec![
            (digest(&layer), layer),
            (digest(&config), config),
            (manifest_digest.clone(), manifest),
        ];
        blobs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Image {
            blobs,
            index,
            manifest_digest,
            wasm_sha256: sha256(wasm),
        })
    }

    /// The layout's files, relative paths in sorted order.
    fn files(&self) -> Vec<(String, &[u8])> {
        let mut files: Vec<(String, &[u8])> = vec![
            ("index.json".to_string(), self.index.as_slice()),
            ("oci-layout".to_string(), OCI_LAYOUT.as_bytes()),
        ];
        for (d, bytes) in &self.blobs {
            let hex = d.trim_start_matches("sha256:");
            files.push((format!("blobs/sha256/{hex}"), bytes.as_slice()));
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }

    /// Writes the layout into `dir`, replacing what a previous run left there.
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        for (rel, bytes) in self.files() {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)?;
        }
        Ok(())
    }

    /// The same layout as one tar file (an `oci-archive`).
    pub fn write_tar(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, tar_of(&self.files())?)
    }
}

const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_wasm_same_digest_and_blobs_named_by_their_hash() {
        let a = Image::build(b"\0asm\x01\0\0\0", "t").unwrap();
        let b = Image::build(b"\0asm\x01\0\0\0", "t").unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        for (d, bytes) in &a.blobs {
            assert_eq!(d, &digest(bytes));
        }
        let c = Image::build(b"\0asm\x01\0\0\x01", "t").unwrap();
        assert_ne!(a.manifest_digest, c.manifest_digest);
    }
}
