//! The other end: the bucket or directory of a target's `offsite:`, and what is on it
//! (archives with their sidecars, newest first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::backup::BackupError;
use crate::config::Config;
use crate::config::backups::{BackupTarget, Offsite};

/// Upload part size: S3 wants at least 5 MiB per part.
pub(super) const PART: usize = 16 * 1024 * 1024;

pub(super) fn err(what: impl std::fmt::Display) -> BackupError {
    BackupError::Offsite(what.to_string())
}

/// Where the target's archives go offsite.
pub(super) struct Bucket {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) prefix: ObjectPath,
    /// How an upload is resumed: S3's multipart API, or a partial file in the directory.
    pub(super) resume: Resume,
}

pub(super) enum Resume {
    S3(Arc<dyn MultipartStore>),
    Dir(PathBuf),
}

/// The object store and the prefix under which the target's archives go.
pub(super) fn open(o: &Offsite) -> Result<(Arc<dyn ObjectStore>, ObjectPath), BackupError> {
    bucket(o).map(|b| (b.store, b.prefix))
}

pub(super) fn bucket(o: &Offsite) -> Result<Bucket, BackupError> {
    if let Some(rest) = o.url.strip_prefix("s3://") {
        // TLS through ring, as everywhere else in runbook (a no-op when already installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&o.region);
        if let Some(e) = &o.endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &o.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &o.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let s3 = Arc::new(b.build().map_err(err)?);
        Ok(Bucket {
            store: s3.clone(),
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            resume: Resume::S3(s3),
        })
    } else {
        std::fs::create_dir_all(&o.url).map_err(|e| BackupError::io(Path::new(&o.url), e))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(&o.url).map_err(err)?;
        Ok(Bucket {
            store: Arc::new(fs),
            prefix: ObjectPath::from(""),
            resume: Resume::Dir(PathBuf::from(&o.url)),
        })
    }
}

pub(super) fn offsite_of<'t>(t: &'t BackupTarget, name: &str) -> Result<&'t Offsite, BackupError> {
    t.offsite
        .as_ref()
        .ok_or_else(|| BackupError::NoOffsite(name.to_string()))
}

pub(super) fn child(prefix: &ObjectPath, name: &str) -> ObjectPath {
    if prefix.as_ref().is_empty() {
        ObjectPath::from(name)
    } else {
        prefix.clone().join(name)
    }
}

/// An archive in the offsite store.
#[derive(Debug, Clone, Serialize)]
pub struct Remote {
    /// The archive's name (`main-….tar.zst`), also when it is stored encrypted.
    pub name: String,
    /// Stored as `<name>.age`, encrypted to the target's `encrypt_to`.
    pub encrypted: bool,
    pub size: u64,
    /// From its sidecar; `None` while the sidecar is missing (an interrupted push).
    pub sha256: Option<String>,
    /// The store's entity tag of the object, when it gives one.
    #[serde(skip)]
    pub e_tag: Option<String>,
}

pub(super) async fn remote_list(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    target: &str,
) -> Result<Vec<Remote>, BackupError> {
    let mut objects = Vec::new();
    let mut sidecars = Vec::new();
    let mut listing = store.list(Some(prefix));
    // Only what is directly under the prefix: another host's `prefix/vps-2/…`, or archives
    // moved into a folder, are not this target's copies.
    let depth = prefix.parts().count() + 1;
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(err)?;
        if meta.location.parts().count() != depth {
            continue;
        }
        let Some(name) = meta.location.filename().map(str::to_string) else {
            continue;
        };
        // `main-db-…` is not an archive of `main`.
        if !crate::backup::is_archive_of(&name, target) {
            continue;
        }
        if name.ends_with(".tar.zst.sha256") || name.ends_with(".tar.zst.age.sha256") {
            sidecars.push((name, meta.location));
        } else if name.ends_with(".tar.zst") || name.ends_with(".tar.zst.age") {
            objects.push((name, meta.size, meta.e_tag));
        }
    }
    let mut sizes = HashMap::new();
    for (name, size, e_tag) in objects {
        // `X.tar.zst.age` with a sidecar of its own is an archive encrypted where it was
        // made, copied as it is; without one, the offsite copy of `X.tar.zst`, encrypted here.
        let own_sidecar = sidecars.iter().any(|(s, _)| *s == format!("{name}.sha256"));
        match name.strip_suffix(crate::backup::crypt::SUFFIX) {
            Some(plain) if !own_sidecar => sizes.insert(plain.to_string(), (size, true, e_tag)),
            _ => sizes.insert(name, (size, false, e_tag)),
        };
    }
    let mut hashes = HashMap::new();
    for (name, location) in sidecars {
        let bytes = store.get(&location).await.map_err(err)?.bytes().await.map_err(err)?;
        let text = String::from_utf8_lossy(&bytes);
        if let Some(h) = text.split_whitespace().next().filter(|h| h.len() == 64) {
            hashes.insert(name.trim_end_matches(".sha256").to_string(), h.to_ascii_lowercase());
        }
    }
    let mut out: Vec<Remote> = sizes
        .into_iter()
        .map(|(name, (size, encrypted, e_tag))| Remote {
            sha256: hashes.get(&name).cloned(),
            name,
            encrypted,
            size,
            e_tag,
        })
        .collect();
    out.sort_by(|a, b| newest_first(&b.name).cmp(&newest_first(&a.name)));
    Ok(out)
}

/// The order of archive names in time: `main-20261123T033000Z.tar.zst`, then the second one
/// of that second, `main-20261123T033000Z-2.tar.zst` (by name alone it would come first).
pub(crate) fn newest_first(name: &str) -> (&str, u32) {
    let base = name.split(".tar.zst").next().unwrap_or(name);
    match base.rsplit_once('-') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => (head, n.parse().unwrap_or(0)),
        _ => (base, 1),
    }
}

pub fn list(config: &Config, name: &str) -> Result<Vec<Remote>, BackupError> {
    let t = crate::backup::target(config, name)?;
    let (store, prefix) = open(offsite_of(t, name)?)?;
    crate::util::runtime::runtime().block_on(remote_list(store.as_ref(), &prefix, name))
}

/// The file that marks a directory as runbook's offsite copies (see [`push`]).
pub(crate) const OFFSITE_MARK: &str = ".runbook-offsite";

/// Scratch directories of `backup push --check` in `dest`.
pub(crate) const CHECK_PREFIX: &str = ".offsite-check-";

/// Why the offsite copy `r` of a local archive of `size` bytes cannot be that archive, if
/// its size says so. A copy as it is has the archive's size; one encrypted on the way has at
/// least the archive's bytes and age's framing: a header, a nonce and a 16-byte tag for each
/// 64 KiB chunk. (A copy damaged without a change of size is found by `pull` and
/// `drill --from-offsite`, which check every byte against the hash.)
pub(super) fn not_whole(r: &Remote, size: u64) -> Option<String> {
    if !r.encrypted {
        return (r.size != size).then(|| format!("the offsite copy has {} bytes, the archive {size}", r.size));
    }
    // "age-encryption.org/v1\n" (22 bytes) and the "--- <mac>\n" line (48) at the least.
    let least = size + 16 * size.div_ceil(64 << 10).max(1) + 16 + 70;
    (r.size < least).then(|| {
        format!(
            "the offsite copy has {} bytes, fewer than the {size}-byte archive takes encrypted",
            r.size
        )
    })
}

/// Why an archive whose bytes do not hash to its sidecar is not pushed.
pub(super) fn mismatch(got: &str, want: &str) -> String {
    format!("its SHA-256 is {got}, its sidecar says {want}: the archive changed or is damaged (`backup verify` it)")
}

#[cfg(test)]
mod tests {
    use super::newest_first;

    #[test]
    fn archives_of_the_same_second_keep_their_order() {
        let mut names = vec![
            "main-20261123T033000Z-2.tar.zst",
            "main-20261123T033000Z.tar.zst",
            "main-20261124T033000Z.tar.zst.age",
            "main-20261123T033000Z-10.tar.zst",
        ];
        names.sort_by(|a, b| newest_first(b).cmp(&newest_first(a)));
        assert_eq!(
            names,
            [
                "main-20261124T033000Z.tar.zst.age",
                "main-20261123T033000Z-10.tar.zst",
                "main-20261123T033000Z-2.tar.zst",
                "main-20261123T033000Z.tar.zst",
            ]
        );
    }
}
