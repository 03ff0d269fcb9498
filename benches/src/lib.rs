//! Inputs shared by the oci-rs benches: deterministic data generators, so that every run
//! measures the same bytes.

/// `len` bytes of deterministic, poorly compressible data (xorshift), seeded by `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An OCI image manifest with `layers` gzip layers, as JSON bytes.
pub fn manifest_json(layers: usize) -> Vec<u8> {
    let digest = |i: usize| format!("sha256:{:064x}", i + 1);
    let layer_list: Vec<String> = (0..layers)
        .map(|i| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
                digest(i + 1000),
                1000 + i
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1234}},"layers":[{}],"annotations":{{"org.opencontainers.image.created":"2026-11-24T00:00:00Z"}}}}"#,
        digest(0),
        layer_list.join(",")
    )
    .into_bytes()
}

/// A generated tree under `dir`: `files` files in directories of 50, sizes cycling from a few
/// bytes to 64 KiB (text-like, compressible), and a symlink per directory.
pub fn tree(dir: &std::path::Path, files: usize) -> std::io::Result<u64> {
    let mut total = 0u64;
    for i in 0..files {
        let d = dir.join(format!("d{:03}", i / 50));
        if i % 50 == 0 {
            std::fs::create_dir_all(&d)?;
            std::os::unix::fs::symlink("f0", d.join("link"))?;
        }
        let size = [17usize, 900, 4096, 20_000, 65_536][i % 5];
        let line = format!("line {i} of a generated file for the layer benches\n");
        let content: Vec<u8> = line.bytes().cycle().take(size).collect();
        total += content.len() as u64;
        std::fs::write(d.join(format!("f{}", i % 50)), content)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_manifest_parses() {
        let m = oci_rs_image::Manifest::parse(super::manifest_json(5), None).unwrap();
        assert_eq!(m.children().len(), 6);
    }
}
