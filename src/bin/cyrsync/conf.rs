//! What the reporting commands (`channel show --json`, `channel check`,
//! `metrics`) read from imapd.conf: the config directory, the channels of
//! `sync_log_channels`, the lock directory.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The default imapd.conf, as Cyrus's.
pub const DEFAULT_CONF: &str = "/etc/imapd.conf";

/// An imapd.conf's `key: value` lines (`#` comments), values as bytes.
pub struct Conf {
    path: PathBuf,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if !first.is_ascii_whitespace() {
            break;
        }
        b = rest;
    }
    while let [rest @ .., last] = b {
        if !last.is_ascii_whitespace() {
            break;
        }
        b = rest;
    }
    b
}

impl Conf {
    pub fn read(path: &Path) -> Result<Conf, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Conf::parse(path, &text))
    }

    pub fn parse(path: &Path, text: &[u8]) -> Conf {
        let entries = text
            .split(|&b| b == b'\n')
            .map(trim)
            .filter(|l| !l.is_empty() && l[0] != b'#')
            .filter_map(|l| {
                let i = l.iter().position(|&b| b == b':')?;
                Some((trim(&l[..i]).to_vec(), trim(&l[i + 1..]).to_vec()))
            })
            .collect();
        Conf {
            path: path.to_path_buf(),
            entries,
        }
    }

    /// A non-empty value (the last one wins, as in Cyrus).
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .rev()
            .find(|(k, v)| k == key.as_bytes() && !v.is_empty())
            .map(|(_, v)| v.as_slice())
    }

    pub fn config_directory(&self) -> Result<PathBuf, String> {
        self.get("configdirectory")
            .map(|v| PathBuf::from(OsStr::from_bytes(v)))
            .ok_or_else(|| format!("{}: no configdirectory", self.path.display()))
    }

    /// As Cyrus's `mboxname_lockpath`: the option, else
    /// `<configdirectory>/lock`.
    pub fn lock_directory(&self) -> Result<PathBuf, String> {
        match self.get("mboxname_lockpath") {
            Some(v) => Ok(PathBuf::from(OsStr::from_bytes(v))),
            None => Ok(self.config_directory()?.join("lock")),
        }
    }

    /// The channels `sync_log` writes to, as `sync_log_init` reads
    /// `sync_log_channels` (unset: the default channel, `None`). Invalid
    /// names are returned too: the caller reports them.
    pub fn channels(&self) -> Vec<Option<Vec<u8>>> {
        let value = self.get("sync_log_channels").unwrap_or(b"\"\"");
        let mut list: Vec<Option<Vec<u8>>> = value
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .map(|w| Some(w.to_vec()))
            .collect();
        if let Some(first) = list.iter().position(|c| c.as_deref() == Some(b"\"\"")) {
            list[first] = None;
        }
        list
    }
}

/// Drop repeated channels (a channel named twice would be reported
/// twice, and a metric family may not repeat a sample), keeping the order.
pub fn dedup(names: &mut Vec<Option<Vec<u8>>>) {
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
}

/// Where the channels live: `--config-dir DIR`, else `-C FILE`'s
/// configdirectory (default /etc/imapd.conf).
#[derive(Debug, Default)]
pub struct Source {
    pub conf: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
}

impl Source {
    /// Handle `-C FILE` / `--config-dir DIR` at `arg`; true if it was one.
    pub fn take(
        &mut self,
        arg: &str,
        it: &mut impl Iterator<Item = std::ffi::OsString>,
    ) -> Result<bool, String> {
        let slot = match arg {
            "-C" => &mut self.conf,
            "--config-dir" => &mut self.config_dir,
            _ => return Ok(false),
        };
        let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        *slot = Some(PathBuf::from(v));
        Ok(true)
    }

    /// The imapd.conf, if one is to be read (not with --config-dir alone).
    pub fn conf(&self) -> Result<Option<Conf>, String> {
        match (&self.conf, &self.config_dir) {
            (None, Some(_)) => Ok(None),
            (c, _) => Conf::read(c.as_deref().unwrap_or(Path::new(DEFAULT_CONF))).map(Some),
        }
    }

    pub fn config_dir(&self, conf: Option<&Conf>) -> Result<PathBuf, String> {
        match (&self.config_dir, conf) {
            (Some(d), _) => Ok(d.clone()),
            (None, Some(c)) => c.config_directory(),
            (None, None) => Err("no config directory".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_options_and_channels() {
        let c = Conf::parse(
            Path::new("x"),
            b"# c\nconfigdirectory: /var/lib/imap \nsync_log_channels: a \"\"  b\n#mboxname_lockpath: /l\n",
        );
        assert_eq!(
            c.config_directory().unwrap(),
            PathBuf::from("/var/lib/imap")
        );
        assert_eq!(
            c.lock_directory().unwrap(),
            PathBuf::from("/var/lib/imap/lock")
        );
        assert_eq!(
            c.channels(),
            vec![Some(b"a".to_vec()), None, Some(b"b".to_vec())]
        );
        let c = Conf::parse(
            Path::new("x"),
            b"configdirectory: /c\nmboxname_lockpath: /l\n",
        );
        assert_eq!(c.channels(), vec![None]);
        assert_eq!(c.lock_directory().unwrap(), PathBuf::from("/l"));
        assert!(Conf::parse(Path::new("x"), b"").config_directory().is_err());
    }
}
