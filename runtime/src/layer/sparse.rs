//! Writing a stream into a file with holes where whole blocks are zero, so a sparse tar
//! entry or a long run of zeros does not fill the disk.

use std::fs::File;
use std::io;

const SPARSE_BLOCK: usize = 4096;
const SPARSE_BUF: usize = 1 << 16;

/// Writes a stream into a new, empty file, leaving holes where whole 4 KiB blocks are zero:
/// a sparse tar entry (10 GiB declared, a few bytes of data) or a long run of zeros does not
/// fill the disk. Call [`SparseWriter::finish`] to give the file its full length.
pub struct SparseWriter {
    file: File,
    /// Bytes accepted so far.
    pos: u64,
    /// Pending bytes, from offset `pos - buf.len()`.
    buf: Vec<u8>,
}

impl SparseWriter {
    /// Write into `file`, which must be empty.
    pub fn new(file: File) -> SparseWriter {
        SparseWriter {
            file,
            pos: 0,
            buf: Vec::with_capacity(SPARSE_BUF),
        }
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let start = self.pos - self.buf.len() as u64;
        // A comparison with a zero block is a memcmp, fast even in a debug build.
        static ZEROS: [u8; SPARSE_BLOCK] = [0; SPARSE_BLOCK];
        let zero = |b: &[u8]| b == &ZEROS[..b.len()];
        let mut i = 0;
        while i < self.buf.len() {
            let end = (i + SPARSE_BLOCK).min(self.buf.len());
            if zero(&self.buf[i..end]) {
                i = end;
                continue;
            }
            let mut j = end;
            while j < self.buf.len() {
                let e = (j + SPARSE_BLOCK).min(self.buf.len());
                if zero(&self.buf[j..e]) {
                    break;
                }
                j = e;
            }
            self.file.write_all_at(&self.buf[i..j], start + i as u64)?;
            i = j;
        }
        self.buf.clear();
        Ok(())
    }

    /// Write what is pending and set the length (a trailing hole included).
    pub fn finish(mut self) -> io::Result<File> {
        self.flush_buf()?;
        self.file.set_len(self.pos)?;
        Ok(self.file)
    }
}

impl io::Write for SparseWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(SPARSE_BUF - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.pos += n as u64;
        if self.buf.len() == SPARSE_BUF {
            self.flush_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_writer_keeps_bytes_and_leaves_holes() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("strata-sparse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let mut w = SparseWriter::new(File::create(&p).unwrap());
        let mut want = Vec::new();
        for (len, byte) in [(100, 1u8), (1 << 20, 0), (5000, 7), (3, 0), (8192, 0)] {
            let chunk = vec![byte; len];
            // Uneven write sizes, as io::copy and decoders make them.
            for part in chunk.chunks(777) {
                w.write_all(part).unwrap();
            }
            want.extend_from_slice(&chunk);
        }
        drop(w.finish().unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), want);
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&p).unwrap().blocks() * 512 < 64 * 1024);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
