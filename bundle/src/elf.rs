//! Just enough ELF to tell a static executable from one that needs a dynamic loader: the
//! operator image holds nothing but the binary, so a binary with a `PT_INTERP` program header
//! (an interpreter such as `/lib64/ld-linux-x86-64.so.2`) cannot run in it. A static-pie binary
//! (`+crt-static`) has a `PT_DYNAMIC` for its own relocations but no interpreter.

use crate::Error;

/// How an executable is linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linking {
    Static,
    /// Needs this program interpreter (dynamic loader).
    Dynamic {
        interpreter: String,
    },
}

const PT_INTERP: u32 = 3;

/// Reads the program headers from the start of an ELF file (`head`: its first bytes; 64 KiB is
/// plenty for any linker's layout).
pub fn linking(head: &[u8]) -> Result<Linking, Error> {
    let bad = |why: &str| Error::NotElf {
        why: why.to_string(),
    };
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err(bad("no ELF magic"));
    }
    if head[4] != 2 {
        return Err(bad("not a 64-bit ELF file"));
    }
    let little = match head[5] {
        1 => true,
        2 => false,
        _ => return Err(bad("unknown byte order")),
    };
    let u16_at = |at: usize| {
        let b = [head[at], head[at + 1]];
        if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = head[at..at + 4].try_into().expect("4 bytes");
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let u64_at = |at: usize| {
        let b: [u8; 8] = head[at..at + 8].try_into().expect("8 bytes");
        if little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    };
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36) as usize;
    let phnum = u16_at(0x38) as usize;
    if phentsize < 56 || phoff.saturating_add(phentsize * phnum) > head.len() {
        return Err(bad("program headers lie outside the bytes read"));
    }
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph) == PT_INTERP {
            let offset = u64_at(ph + 8) as usize;
            let size = u64_at(ph + 32) as usize;
            let interpreter = head
                .get(offset..offset.saturating_add(size))
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .unwrap_or_else(|| "(beyond the bytes read)".to_string());
            return Ok(Linking::Dynamic { interpreter });
        }
    }
    Ok(Linking::Static)
}

/// The OCI architecture an ELF file is built for (`e_machine`): `amd64`, `arm64`, or the
/// number for others.
pub fn machine(head: &[u8]) -> Result<String, Error> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return Err(Error::NotElf {
            why: "no ELF magic".into(),
        });
    }
    let b = [head[18], head[19]];
    let m = if head[5] == 2 {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    };
    Ok(match m {
        62 => "amd64".to_string(),
        183 => "arm64".to_string(),
        other => format!("ELF machine {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_built_for_this_machine() {
        let head = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(machine(&head[..64]).unwrap(), crate::oci::oci_arch());
        assert!(machine(b"#!/bin/sh").is_err());
    }

    /// A minimal little-endian ELF64 header with the given program header types.
    fn elf(types: &[u32], interp: &str) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * types.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        let strings = b.len() as u64;
        for (i, t) in types.iter().enumerate() {
            let ph = 64 + i * 56;
            b[ph..ph + 4].copy_from_slice(&t.to_le_bytes());
            b[ph + 8..ph + 16].copy_from_slice(&strings.to_le_bytes());
            b[ph + 32..ph + 40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
        }
        b.extend_from_slice(interp.as_bytes());
        b.push(0);
        b
    }

    #[test]
    fn an_interpreter_header_means_dynamic_and_is_named() {
        let head = elf(&[6, 3, 1, 2], "/lib64/ld-linux-x86-64.so.2");
        assert_eq!(
            linking(&head).unwrap(),
            Linking::Dynamic {
                interpreter: "/lib64/ld-linux-x86-64.so.2".into()
            }
        );
    }

    #[test]
    fn static_pie_has_dynamic_but_no_interpreter() {
        assert_eq!(linking(&elf(&[6, 1, 2, 7], "")).unwrap(), Linking::Static);
    }

    #[test]
    fn not_an_elf_file_is_an_error() {
        assert!(matches!(linking(b"#!/bin/sh\n"), Err(Error::NotElf { .. })));
        let mut head = elf(&[3], "x");
        head.truncate(80);
        assert!(matches!(linking(&head), Err(Error::NotElf { .. })));
    }

    #[test]
    fn this_dynamically_linked_test_binary_names_its_loader() {
        // cargo test builds without +crt-static: a real linker's layout, with an interpreter.
        let head = std::fs::read("/proc/self/exe").unwrap();
        let head = &head[..head.len().min(64 * 1024)];
        match linking(head).unwrap() {
            Linking::Dynamic { interpreter } => {
                assert!(interpreter.contains("ld-"), "{interpreter}")
            }
            Linking::Static => panic!("a test binary built without +crt-static read as static"),
        }
    }
}
