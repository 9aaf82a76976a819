//! `backup pull`: an offsite archive fetched under a temporary name, hashed as it arrives,
//! decrypted if need be, and renamed and recorded only when it matches its sidecar.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::remote::{Remote, child, err, offsite_of, open, remote_list};
use crate::audit::Draft;
use crate::backup::{BackupError, Progress, archive};
use crate::config::Config;
use crate::config::backups::Offsite;
use crate::store::{NewBackup, Store};
use crate::util::hex;

#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub target: String,
    pub pulled: Vec<PathBuf>,
    pub skipped: Vec<String>,
    /// (archive, why) for each that could not be pulled; the others still were (exit 1).
    pub failed: Vec<(String, String)>,
}

/// Copies offsite archives that are not here (all, or the one named) into `into` (default:
/// the target's `dest`), each checked against its offsite sidecar.
pub fn pull(
    config: &Config,
    db: &Store,
    name: &str,
    only: Option<&str>,
    into: Option<&Path>,
    progress: &dyn Fn(Progress),
) -> Result<PullReport, BackupError> {
    let t = crate::backup::target(config, name)?;
    let o = offsite_of(t, name)?;
    let (store, prefix) = open(o)?;
    let rt = crate::util::runtime::runtime();
    let remote = rt.block_on(remote_list(store.as_ref(), &prefix, name))?;
    let dest = into.unwrap_or(&t.dest).to_path_buf();
    std::fs::create_dir_all(&dest).map_err(|e| BackupError::io(&dest, e))?;
    // Into `dest`, under the target's lock: a create that finds a download's `.part` file
    // then knows it is what a killed pull left.
    let _lock = match into {
        None => Some(crate::backup::fsutil::lock(&dest, name)?),
        Some(_) => None,
    };
    let mut report = PullReport {
        target: name.to_string(),
        pulled: Vec::new(),
        skipped: Vec::new(),
        failed: Vec::new(),
    };
    let wanted: Vec<&Remote> = remote.iter().filter(|r| only.is_none_or(|o| o == r.name)).collect();
    if let Some(o) = only
        && wanted.is_empty()
    {
        return Err(err(format!("no archive `{o}` offsite")));
    }
    for r in wanted {
        let Some(sha) = &r.sha256 else {
            report
                .skipped
                .push(format!("{} (no sidecar: an interrupted push)", r.name));
            continue;
        };
        let local = dest.join(&r.name);
        if archive::read_sidecar(&local).is_ok_and(|h| &h == sha) && local.is_file() {
            // Here already; recorded now if an earlier pull could not record it.
            if into.is_none() && crate::backup::record_of(db, &local)?.is_none() {
                if let Err(e) = record(config, db, name, &local, sha) {
                    report.failed.push((r.name.clone(), e.to_string()));
                    continue;
                }
                report.pulled.push(local);
                continue;
            }
            report.skipped.push(r.name.clone());
            continue;
        }
        // A file of this name here already (its sidecar lost) is replaced only by the same
        // bytes, and is not removed if recording fails.
        let was_here = local.exists();
        let kept = fetch(o, store.as_ref(), &prefix, r, sha, &local, progress)
            .and_then(|()| archive::write_sidecar(&local, sha).map_err(|e| BackupError::io(&local, e)))
            .and_then(|_| match into {
                None => record(config, db, name, &local, sha),
                Some(_) => Ok(()),
            });
        match kept {
            Ok(()) => report.pulled.push(local),
            // One archive that cannot be had (damaged offsite, no identity) does not keep
            // the older ones from coming back. It is not left half there: a file the state
            // file does not know would never be pulled again.
            Err(e) => {
                if !was_here {
                    let _ = std::fs::remove_file(archive::sidecar_path(&local));
                    let _ = std::fs::remove_file(&local);
                }
                report.failed.push((r.name.clone(), e.to_string()));
            }
        }
    }
    Ok(report)
}

/// Downloads one archive (decrypting it if it is stored encrypted) to `local`, checked
/// against `sha`; nothing of it is left if that fails.
pub(super) fn fetch(
    o: &Offsite,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    r: &Remote,
    sha: &str,
    local: &Path,
    progress: &dyn Fn(Progress),
) -> Result<(), BackupError> {
    let rt = crate::util::runtime::runtime();
    progress(Progress::Phase("downloading"));
    progress(Progress::Total(r.size));
    if r.encrypted {
        let identity = o.identity_file.as_deref().ok_or_else(|| {
            err(format!(
                "{} is encrypted: set offsite.identity_file to the age identity that decrypts it",
                r.name
            ))
        })?;
        let mut cipher = local.as_os_str().to_owned();
        cipher.push(".age.part");
        let cipher = PathBuf::from(cipher);
        let fetched = rt.block_on(download(
            store,
            &child(prefix, &format!("{}.age", r.name)),
            &cipher,
            None,
            progress,
        ));
        let result = fetched.and_then(|()| decrypt(&cipher, local, identity, sha));
        let _ = std::fs::remove_file(&cipher);
        result
    } else {
        rt.block_on(download(store, &child(prefix, &r.name), local, Some(sha), progress))
    }
}

/// A file arriving under `<to>.part`, hashed as it is written; it takes its real name only
/// when complete, fsynced and (if asked) of the expected hash. Dropped unfinished, it is removed.
pub(super) struct Landing {
    pub(super) tmp: PathBuf,
    pub(super) out: Option<std::io::BufWriter<std::fs::File>>,
    pub(super) hasher: Sha256,
}

impl Landing {
    fn new(to: &Path) -> Result<Landing, BackupError> {
        let mut tmp = to.as_os_str().to_owned();
        tmp.push(".part");
        let tmp = PathBuf::from(tmp);
        let f = std::fs::File::create(&tmp).map_err(|e| BackupError::io(&tmp, e))?;
        Ok(Landing {
            out: Some(std::io::BufWriter::new(f)),
            tmp,
            hasher: Sha256::new(),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.hasher.update(bytes);
        match self.out.as_mut() {
            Some(out) => out.write_all(bytes).map_err(|e| BackupError::io(&self.tmp, e)),
            None => Ok(()),
        }
    }

    /// `what` names the content in a mismatch (`downloaded`, `decrypted`).
    fn finish(
        mut self,
        to: &Path,
        expected: Option<&str>,
        what: &str,
        from: &dyn std::fmt::Display,
    ) -> Result<(), BackupError> {
        let out = self.out.take().expect("finished once");
        let f = out
            .into_inner()
            .map_err(|e| BackupError::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| BackupError::io(&self.tmp, e))?;
        let got = hex(&std::mem::take(&mut self.hasher).finalize());
        if let Some(expected) = expected
            && got != expected
        {
            return Err(err(format!(
                "{from}: {what} SHA-256 {got} does not match the offsite sidecar {expected}"
            )));
        }
        std::fs::rename(&self.tmp, to).map_err(|e| BackupError::io(to, e))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Streams an object to `to`, renamed into place only if what came has the SHA-256
/// `expected` (when one is given).
pub(super) async fn download(
    store: &dyn ObjectStore,
    from: &ObjectPath,
    to: &Path,
    expected: Option<&str>,
    progress: &dyn Fn(Progress),
) -> Result<(), BackupError> {
    let mut landing = Landing::new(to)?;
    let mut stream = store.get(from).await.map_err(err)?.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(err)?;
        landing.write(&chunk)?;
        progress(Progress::Advance(chunk.len() as u64));
    }
    landing.finish(to, expected, "downloaded", from)
}

/// Decrypts `cipher` into `plain`, checking the plaintext's hash.
pub(super) fn decrypt(cipher: &Path, plain: &Path, identity: &Path, expected: &str) -> Result<(), BackupError> {
    use std::io::Read;
    let input = std::fs::File::open(cipher).map_err(|e| BackupError::io(cipher, e))?;
    let mut reader =
        crate::backup::crypt::decrypting(input, identity).map_err(|e| err(format!("{}: {e}", cipher.display())))?;
    let mut landing = Landing::new(plain)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| err(format!("decrypting {}: {e}", cipher.display())))?;
        if n == 0 {
            break;
        }
        landing.write(&buf[..n])?;
    }
    landing.finish(plain, Some(expected), "decrypted", &cipher.display())
}

/// A pulled archive is recorded like a created one (its manifest says when and where).
pub(super) fn record(config: &Config, db: &Store, name: &str, path: &Path, sha: &str) -> Result<(), BackupError> {
    let identity = crate::backup::crypt::identity_for(config, path);
    let m = archive::read_manifest(path, identity.as_deref()).map_err(|e| BackupError::io(path, e))?;
    let size = std::fs::metadata(path).map_err(|e| BackupError::io(path, e))?.len();
    let created = m
        .created
        .parse::<jiff::Timestamp>()
        .map(crate::clock::to_text)
        .unwrap_or_else(|_| m.created.clone());
    db.record_backup(
        &NewBackup {
            target: name.to_string(),
            path: path.display().to_string(),
            created_at: created,
            host: m.host.clone(),
            size: size as i64,
            sha256: sha.to_string(),
            files: m.files().count() as i64,
            data_bytes: m.data_bytes() as i64,
            duration_ms: 0,
        },
        &Draft::new(
            "backup.pulled",
            name,
            json!({ "archive": path, "sha256": sha, "from": m.host }),
            &config.redactor,
        ),
    )?;
    Ok(())
}
