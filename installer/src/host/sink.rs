//! Where a download's bytes go on disk.
//!
//! Writing through the page cache is most of what a download costs on a fast link: `curl -o`
//! of 500 MiB on loopback spends about three quarters of its time in `write`, allocating cache
//! pages and copying into them. On a virtual machine whose free memory is handed back to the
//! host (free page reporting), the large folios that big writes get are the memory the host
//! took back, and filling them costs a fault on the host for every page: three times slower
//! still. So whole aligned blocks go straight to the disk (`O_DIRECT`) from one reused buffer,
//! which costs neither; what cannot (a tail shorter than a block, a resumed file that ends
//! mid-block, a file system that refuses direct writes) goes through the page cache in 64 KiB
//! pieces, which keeps its folios small, with writeback started every 8 MiB.

#![allow(clippy::disallowed_methods)] // host/ is where the machine is touched

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::fs::File;
use std::io::{self, Write};

/// Offsets, lengths and addresses of direct writes are multiples of this: every logical block
/// size Linux block devices use divides it.
const ALIGN: usize = 4096;

/// The size of one direct write: large enough that the disk's latency per request is small
/// beside its transfer time (one 4 MiB write takes about 2 ms on a virtio disk).
const BLOCK: usize = 4 << 20;

/// The size of each write through the page cache.
const PIECE: u64 = 64 << 10;

/// How many bytes written through the page cache at a time are handed to writeback, so a later
/// fsync (the k3s binary's, before it is linked into place) finds them written.
const WRITEBACK_STEP: u64 = 8 << 20;

/// The writer of one download attempt, from the file's current size on.
pub(crate) struct Sink {
    file: File,
    /// How much of the file is written (the offset the next byte goes to, once `block` is out).
    written: u64,
    /// Where writeback was last started, for bytes written through the page cache.
    kicked: u64,
    /// The block being filled, while writing direct.
    block: Option<Block>,
}

/// A `BLOCK`-sized buffer at an `ALIGN`ed address.
struct Block {
    mem: Vec<u8>,
    at: usize,
    filled: usize,
}

impl Block {
    fn new() -> Block {
        let mem = vec![0u8; BLOCK + ALIGN];
        let at = mem.as_ptr().align_offset(ALIGN);
        Block { mem, at, filled: 0 }
    }

    fn bytes(&self) -> &[u8] {
        &self.mem[self.at..self.at + self.filled]
    }
}

impl Sink {
    /// Writes to `file`, which holds `start` bytes and is positioned at its end.
    pub(crate) fn new(file: File, start: u64) -> Sink {
        // A resumed file that ends mid-block cannot take aligned writes: it goes through the
        // page cache, as does a file system that refuses O_DIRECT.
        let direct = start % ALIGN as u64 == 0 && set_direct(&file, true).is_ok();
        Sink {
            file,
            written: start,
            kicked: start,
            block: direct.then(Block::new),
        }
    }

    /// Whether whole blocks are written direct.
    #[cfg(test)]
    fn direct(&self) -> bool {
        self.block.is_some()
    }

    /// Takes the next bytes of the download.
    pub(crate) fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while let Some(block) = &mut self.block {
            if data.is_empty() {
                return Ok(());
            }
            let n = data.len().min(BLOCK - block.filled);
            let at = block.at + block.filled;
            block.mem[at..at + n].copy_from_slice(&data[..n]);
            block.filled += n;
            data = &data[n..];
            if block.filled == BLOCK {
                self.write_block()?;
            }
        }
        self.write_cached(data)
    }

    /// Writes what is held back and returns: everything pushed is in the file.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.write_block()?;
        if let Some(block) = self.block.take() {
            // The tail shorter than a block.
            set_direct(&self.file, false).map_err(io::Error::from)?;
            self.write_cached(block.bytes())?;
        }
        Ok(())
    }

    /// Writes the block's whole `ALIGN`ed part direct and keeps the rest in it. A file system
    /// that refuses a direct write (EINVAL) gets the rest through the page cache from then on.
    fn write_block(&mut self) -> io::Result<()> {
        let Some(block) = &mut self.block else {
            return Ok(());
        };
        let whole = block.filled - block.filled % ALIGN;
        let mut done = 0;
        while done < whole {
            let at = block.at + done;
            match self.file.write(&block.mem[at..block.at + whole]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(Errno::EINVAL as i32) => break,
                Err(e) => return Err(e),
            }
        }
        self.written += done as u64;
        self.kicked = self.written;
        if done < whole {
            let block = self.block.take().expect("the block is there");
            set_direct(&self.file, false).map_err(io::Error::from)?;
            return self.write_cached(&block.bytes()[done..]);
        }
        let (at, filled) = (block.at, block.filled);
        block.mem.copy_within(at + whole..at + filled, at);
        block.filled -= whole;
        Ok(())
    }

    /// Writes through the page cache, in `PIECE`s that end on `PIECE` boundaries of the file.
    fn write_cached(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = PIECE - self.written % PIECE;
            let n = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.file.write_all(&data[..n])?;
            data = &data[n..];
            self.written += n as u64;
            if self.written - self.kicked >= WRITEBACK_STEP {
                start_writeback(&self.file, self.kicked, self.written - self.kicked);
                self.kicked = self.written;
            }
        }
        Ok(())
    }
}

/// Starts writing a range of an open file back to disk, without waiting: a later fsync of it
/// (the k3s binary's, before it is linked into place) then finds little left to do, because
/// the disk wrote while the network was still sending.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on a descriptor `file` owns; it touches no memory of ours. Its
    // result is advisory: on failure the later fsync simply does all the work.
    unsafe {
        nix::libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            len,
            nix::libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Turns O_DIRECT on or off for an open file (Linux lets `F_SETFL` change it); a file system
/// without direct I/O refuses with EINVAL.
fn set_direct(file: &File, on: bool) -> Result<(), Errno> {
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags - OFlag::O_DIRECT
    };
    fcntl(file, FcntlArg::F_SETFL(flags)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    /// Bytes that differ at every offset, so a misplaced block shows.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
            .collect()
    }

    /// Pushes `data` in chunks of the given sizes (cycled) after `start` bytes already there.
    fn write(start: &[u8], data: &[u8], chunks: &[usize]) -> (Vec<u8>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        std::fs::write(&path, start).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.seek(io::SeekFrom::End(0)).unwrap();
        let mut sink = Sink::new(file, start.len() as u64);
        let direct = sink.direct();
        let mut rest = data;
        for size in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*size).min(rest.len());
            sink.push(&rest[..n]).unwrap();
            rest = &rest[n..];
        }
        sink.finish().unwrap();
        (std::fs::read(&path).unwrap(), direct)
    }

    #[test]
    fn whole_blocks_go_direct_and_every_byte_lands_in_place() {
        for len in [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK + ALIGN + 7,
        ] {
            let data = pattern(len, 1);
            let (got, direct) = write(&[], &data, &[409_600, 1, 65_536, 3_000_001]);
            assert!(direct, "a file in the temporary directory takes O_DIRECT");
            assert_eq!(got.len(), len);
            assert!(
                got == data,
                "{len} bytes written direct come back as written"
            );
        }
    }

    #[test]
    fn a_file_resumed_mid_block_is_written_through_the_page_cache() {
        let head = pattern(ALIGN + 5, 2);
        let data = pattern(BLOCK + 3 * PIECE as usize + 11, 3);
        let (got, direct) = write(&head, &data, &[100_000, 7]);
        assert!(!direct);
        assert!(got[..head.len()] == head[..] && got[head.len()..] == data[..]);
    }

    #[test]
    fn a_file_resumed_on_a_block_boundary_goes_on_direct() {
        let head = pattern(2 * ALIGN, 4);
        let data = pattern(BLOCK + 12_345, 5);
        let (got, direct) = write(&head, &data, &[400_000]);
        assert!(direct);
        assert!(got[..head.len()] == head[..] && got[head.len()..] == data[..]);
    }

    #[test]
    fn a_refused_direct_write_goes_on_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let file = File::create(&path).unwrap();
        let mut sink = Sink::new(file, 0);
        // A buffer one byte off its alignment: the kernel refuses the direct write with EINVAL,
        // as a file system that takes the flag but not the write would.
        sink.block.as_mut().unwrap().at += 1;
        let data = pattern(2 * BLOCK + 99, 6);
        sink.push(&data[..BLOCK + 50]).unwrap();
        assert!(
            !sink.direct(),
            "after EINVAL the sink writes through the page cache"
        );
        sink.push(&data[BLOCK + 50..]).unwrap();
        sink.finish().unwrap();
        assert!(std::fs::read(&path).unwrap() == data);
    }
}
