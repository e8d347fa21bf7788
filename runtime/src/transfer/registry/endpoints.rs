//! The OCI distribution API's endpoints on a [`Client`]: manifests, blob HEAD and GET,
//! cross-repository mounts, uploads and manifest pushes.

use super::*;

impl Client {
    /// Fetch a manifest or index by tag or digest: bytes and media type. A digest is checked,
    /// and so is a tag's Docker-Content-Digest header.
    pub fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String)> {
        // Tags cannot hold ':', so anything with one is a digest and must be checked.
        let pinned = reference.contains(':');
        if pinned {
            media::digest_hex(reference)?;
        }
        let url = self.url(&format!("manifests/{reference}"));
        let a = self.send_opts(
            "GET",
            &url,
            &[("Accept", MANIFEST_ACCEPT)],
            Body::Empty,
            true,
        )?;
        let sep = if pinned { '@' } else { ':' };
        let what = format!("manifest {}{sep}{reference}", self.reference.location());
        if a.status == 404 {
            return Err(err!(
                "{}:{reference} not found in the registry: check the name and tag",
                self.reference.location()
            ));
        }
        if a.status != 200 {
            let s = a.status;
            return Err(status_error(&what, s, &a.text()));
        }
        let too_large = || err!("{what} is larger than {MAX_MANIFEST} bytes: refusing it");
        if a.header("Content-Length")
            .and_then(|l| l.trim().parse::<u64>().ok())
            .is_some_and(|l| l > MAX_MANIFEST)
        {
            return Err(too_large());
        }
        let ct = a
            .header("Content-Type")
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let header_digest = a.header("Docker-Content-Digest");
        let mut bytes = Vec::new();
        a.resp
            .into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                if is_timeout(&e) {
                    err!(
                        "{what}: not received within {} s (pass a longer --timeout SECS if the registry is just slow)",
                        self.timeout.as_secs()
                    )
                } else {
                    err!("cannot read {what}: {e}")
                }
            })?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(too_large());
        }
        let got = format!("sha256:{}", crate::util::sha256_hex(&bytes));
        if pinned && got != reference {
            return Err(err!(
                "{what}: the registry sent content with digest {got}: refusing it"
            ));
        }
        // containerd resolves a tag to this header's digest and then checks the content
        // against it; a mismatch means a broken or lying registry.
        if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:")) {
            if h.trim() != got {
                return Err(err!(
                    "{what}: the registry says its digest is {:?} but the content has digest {got}: refusing it",
                    h.trim()
                ));
            }
        }
        Ok((bytes, ct))
    }

    /// GET a blob; the response body streams, cut off past `size` bytes when given.
    pub fn blob(&mut self, digest: &str, size: Option<u64>) -> Result<BlobReader> {
        media::digest_hex(digest)?;
        let url = self.url(&format!("blobs/{digest}"));
        let a = self.send("GET", &url, &[], Body::Empty)?;
        if a.status != 200 {
            let s = a.status;
            return Err(status_error(&format!("blob {digest}"), s, &a.text()));
        }
        Ok(BlobReader {
            inner: a.resp.into_reader(),
            limit: size,
            count: 0,
            registry: self.reference.registry.clone(),
            timeout: self.timeout,
        })
    }

    /// Bytes `start..end` of a blob by an HTTP range request; the registry must answer 206
    /// with exactly that many bytes (the whole exchange under the timeout).
    pub fn blob_range(&mut self, digest: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        media::digest_hex(digest)?;
        if end <= start {
            return Ok(Vec::new());
        }
        let url = self.url(&format!("blobs/{digest}"));
        let range = format!("bytes={start}-{}", end - 1);
        let a = self.send_opts("GET", &url, &[("Range", &range)], Body::Empty, true)?;
        if a.status != 206 {
            let s = a.status;
            return Err(status_error(
                &format!("bytes {start}..{end} of blob {digest} (a range request)"),
                s,
                &a.text(),
            ));
        }
        let want = end - start;
        let mut buf = Vec::with_capacity(want.min(64 << 20) as usize);
        a.resp
            .into_reader()
            .take(want + 1)
            .read_to_end(&mut buf)
            .map_err(|e| err!("bytes {start}..{end} of blob {digest}: {e}"))?;
        if buf.len() as u64 != want {
            return Err(err!(
                "bytes {start}..{end} of blob {digest}: the registry sent {} bytes",
                buf.len()
            ));
        }
        Ok(buf)
    }

    /// Whether the repository has a blob (HEAD).
    pub fn has_blob(&mut self, digest: &str) -> Result<bool> {
        let url = self.url(&format!("blobs/{digest}"));
        let a = self.send("HEAD", &url, &[], Body::Empty)?;
        match a.status {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(status_error(&format!("checking blob {digest}"), s, "")),
        }
    }

    /// Try to mount a blob from another repository of the same registry: `Ok(None)` when
    /// mounted, `Ok(Some(location))` when the registry opened an upload instead.
    pub fn mount(&mut self, digest: &str, from: &str) -> Result<Option<String>> {
        self.add_pull_scope(from);
        let url = self.url(&format!(
            "blobs/uploads/?mount={}&from={}",
            auth::encode(digest),
            auth::encode(from)
        ));
        let a = self.send("POST", &url, &[], Body::Empty)?;
        match a.status {
            201 => Ok(None),
            202 => {
                let loc = a
                    .header("Location")
                    .ok_or_else(|| err!("the registry opened an upload without a Location"))?;
                Ok(Some(self.resolve(&loc)))
            }
            s => Err(status_error(
                &format!("mounting blob {digest}"),
                s,
                &a.text(),
            )),
        }
    }

    /// Open an upload session: its absolute location.
    pub fn start_upload(&mut self) -> Result<String> {
        let url = self.url("blobs/uploads/");
        let a = self.send("POST", &url, &[], Body::Empty)?;
        if a.status != 202 {
            let s = a.status;
            return Err(status_error("starting an upload", s, &a.text()));
        }
        let loc = a
            .header("Location")
            .ok_or_else(|| err!("the registry opened an upload without a Location"))?;
        Ok(self.resolve(&loc))
    }

    /// Finish an upload with the whole blob in one PUT.
    pub fn put_blob(&mut self, location: &str, digest: &str, body: Body<'_>) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", auth::encode(digest));
        let a = self.send("PUT", &url, &[], body)?;
        if a.status != 201 && a.status != 204 {
            let s = a.status;
            return Err(status_error(
                &format!("uploading blob {digest}"),
                s,
                &a.text(),
            ));
        }
        Ok(())
    }

    /// Upload a manifest under a tag; the digest the registry reports (or ours).
    pub fn put_manifest(&mut self, tag: &str, bytes: &[u8], media_type: &str) -> Result<String> {
        let url = self.url(&format!("manifests/{tag}"));
        let a = self.send("PUT", &url, &[], Body::Bytes(bytes, media_type))?;
        if a.status != 201 && a.status != 200 {
            let s = a.status;
            return Err(status_error("uploading the manifest", s, &a.text()));
        }
        let ours = format!("sha256:{}", crate::util::sha256_hex(bytes));
        Ok(a.header("Docker-Content-Digest").unwrap_or(ours))
    }
}
