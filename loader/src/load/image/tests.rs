//! Unit tests of the image checks: real ELF libraries, and small PE and Mach-O files written
//! with `object`, checked on any host.

use proptest::prelude::*;

use super::*;
use crate::load::test_support::plugin_bytes;
#[cfg(target_os = "linux")]
use crate::load::test_support::system_library;

const ELF_X86_64: Target = Target {
    format: BinaryFormat::Elf,
    architecture: Architecture::X86_64,
    little_endian: true,
};

fn reason(result: Result<(), ImageProblem>) -> String {
    match result {
        Err(ImageProblem::Malformed { reason }) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// A minimal 64-bit little-endian ELF shared object: header, then the program headers
/// `(p_type, p_offset, p_filesz)`, padded with zeros to `len` bytes; no section headers.
fn synth(phdrs: &[(u32, u64, u64)], len: usize) -> Vec<u8> {
    let mut out = vec![0_u8; len.max(64 + 56 * phdrs.len())];
    let mut put = |at: usize, value: u64, width: usize| {
        out[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    };
    put(16, 3, 2); // ET_DYN
    put(18, 62, 2); // EM_X86_64
    put(20, 1, 4);
    put(32, 64, 8); // e_phoff
    put(52, 64, 2); // e_ehsize
    put(54, 56, 2); // e_phentsize
    put(56, phdrs.len() as u64, 2);
    for (i, &(p_type, offset, filesz)) in phdrs.iter().enumerate() {
        let base = 64 + i * 56;
        put(base, u64::from(p_type), 4);
        put(base + 8, offset, 8);
        put(base + 32, filesz, 8);
    }
    out[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
    out.truncate(len);
    out
}

/// The shortest prefix of `bytes` that passes (acceptance is monotonic in length).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn shortest_valid_prefix(bytes: &[u8]) -> usize {
    let (mut lo, mut hi) = (0, bytes.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if check_image_for(&bytes[..mid], &ELF_X86_64).is_ok() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

#[test]
fn the_root_symbol_is_abi_stables() {
    assert_eq!(ROOT_SYMBOL, "_1as_0lib_1header_0root_bmodule_bloader");
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_plugin_passes_and_its_prefixes_do_not() {
    let bytes = plugin_bytes();
    assert_eq!(check_image(bytes), Ok(()));
    let full = shortest_valid_prefix(bytes);
    assert_eq!(full, bytes.len(), "the section header table ends the file");
    for cut in [full - 1, full - full / 4, full / 2, 4096] {
        let err = reason(check_image(&bytes[..cut]));
        assert!(
            (err.starts_with("PT_LOAD segment ")
                || err.starts_with("section ")
                || err.starts_with("program header table"))
                && err.ends_with(&format!("but the file has {cut} bytes (truncated?)")),
            "cut at {cut}: {err}"
        );
    }
    for cut in [1, 3] {
        assert_eq!(
            reason(check_image(&bytes[..cut])),
            "not an ELF file (bad magic)"
        );
    }
    for cut in [10, 40, 63] {
        assert_eq!(
            reason(check_image(&bytes[..cut])),
            format!("truncated ELF header: the file has {cut} bytes, a 64-bit header needs 64")
        );
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_library_for_another_processor_is_named() {
    let mut bytes = plugin_bytes().to_vec();
    bytes[18..20].copy_from_slice(&183_u16.to_le_bytes());
    let problem = check_image(&bytes).expect_err("an aarch64 library");
    assert_eq!(
        problem,
        ImageProblem::WrongArchitecture {
            found: "aarch64".to_owned(),
            host: "x86_64".to_owned()
        }
    );
    assert_eq!(
        problem.to_string(),
        "built for aarch64, this host is x86_64"
    );
    bytes[18..20].copy_from_slice(&3_u16.to_le_bytes());
    assert_eq!(
        check_image(&bytes).map_err(|e| e.to_string()),
        Err("built for x86, this host is x86_64".to_owned())
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_library_without_the_root_symbol_is_not_a_plugin() {
    let Some((path, bytes)) = system_library() else {
        return;
    };
    assert_eq!(
        check_image(bytes),
        Err(ImageProblem::NoRootModule {
            symbol: ROOT_SYMBOL.to_owned()
        }),
        "{}",
        path.display()
    );
}

#[test]
fn other_formats_and_junk_are_named() {
    assert_eq!(check_image_for(b"", &ELF_X86_64), Err(ImageProblem::Empty));
    for junk in [&b"hello, plugin\n"[..], b"\x7fELx", b"\x7fE"] {
        assert_eq!(
            reason(check_image_for(junk, &ELF_X86_64)),
            "not an ELF file (bad magic)"
        );
    }
    let pe = Target {
        format: BinaryFormat::Pe,
        ..ELF_X86_64
    };
    assert_eq!(
        reason(check_image_for(plugin_bytes(), &pe)),
        "an ELF file, but this host loads PE (Windows) libraries"
    );
    let macho = Target {
        format: BinaryFormat::MachO,
        ..ELF_X86_64
    };
    assert_eq!(
        reason(check_image_for(plugin_bytes(), &macho)),
        "an ELF file, but this host loads Mach-O (macOS) libraries"
    );
    assert_eq!(
        reason(check_image_for(b"MZ junk", &pe)),
        "not a PE (Windows) library"
    );
}

#[test]
fn malformed_elf_headers_are_refused() {
    let with = |at: usize, value: &[u8]| {
        let mut elf = plugin_bytes().to_vec();
        elf[at..at + value.len()].copy_from_slice(value);
        reason(check_image_for(&elf, &ELF_X86_64))
    };
    assert_eq!(
        with(16, &[2, 0]),
        "not a shared library (e_type 2, an executable)"
    );
    assert_eq!(
        with(16, &[1, 0]),
        "not a shared library (e_type 1, a relocatable object)"
    );
    assert!(with(56, &[0xff, 0xff]).contains("PN_XNUM"));
    assert_eq!(
        with(54, &[32, 0]),
        "program header entry size is 32 bytes, a 64-bit ELF file needs 56"
    );
    assert_eq!(
        with(6, &[2]),
        "unsupported ELF header (class 2, byte order 1, version 2)"
    );
    assert_eq!(with(4, &[3]), "unsupported ELF class 3 (expected 1 or 2)");
    let len = plugin_bytes().len() as u64;
    assert_eq!(
        with(32, &(len - 8).to_le_bytes()),
        format!(
            "program header table ({} entries at byte {}) ends at byte {} \
             but the file has {len} bytes (truncated?)",
            u16::from_le_bytes([plugin_bytes()[56], plugin_bytes()[57]]),
            len - 8,
            len - 8 + 56 * u64::from(u16::from_le_bytes([plugin_bytes()[56], plugin_bytes()[57]]))
        )
    );
    assert!(with(40, &(len - 8).to_le_bytes()).starts_with("section header table"));
}

#[test]
fn segment_messages_name_the_header_index() {
    let elf = synth(&[(1, 0, 100), (2, 0, 0), (1, 4096, 908_248)], 40960);
    assert_eq!(
        reason(check_image_for(&elf, &ELF_X86_64)),
        "PT_LOAD segment 2 ends at byte 912344 but the file has 40960 bytes (truncated?)"
    );
    let elf = synth(&[(1, u64::MAX, 2)], 4096);
    assert_eq!(
        reason(check_image_for(&elf, &ELF_X86_64)),
        format!(
            "PT_LOAD segment 0 has offset {} and size 2, which overflow",
            u64::MAX
        )
    );
    let elf = synth(&[(2, 0, 100)], 4096);
    assert_eq!(
        reason(check_image_for(&elf, &ELF_X86_64)),
        "no PT_LOAD segment"
    );
    let elf = synth(&[], 4096);
    assert_eq!(
        reason(check_image_for(&elf, &ELF_X86_64)),
        "no program headers"
    );
    let elf = synth(&[(1, 0, 4096)], 4096);
    assert!(reason(check_image_for(&elf, &ELF_X86_64)).starts_with("no section headers"));
}

const PE_X86_64: Target = Target {
    format: BinaryFormat::Pe,
    ..ELF_X86_64
};

const MACHO_X86_64: Target = Target {
    format: BinaryFormat::MachO,
    ..ELF_X86_64
};

/// A small 64-bit PE image for `machine` with a `.text` section and, when `exports` is not
/// empty, an `.edata` section exporting those names; a DLL when `dll`.
fn small_pe(machine: pe::Machine, dll: bool, exports: &[&str]) -> Vec<u8> {
    use object::write::pe::{NtHeaders, Writer};
    let dll_name = b"plugin.dll\0";
    let n = exports.len() as u32;
    let names_len: u32 = exports.iter().map(|e| e.len() as u32 + 1).sum();
    let edata_len = 40 + 10 * n + dll_name.len() as u32 + names_len;
    let mut buffer = Vec::new();
    let mut writer = Writer::new(true, 0x1000, 0x200, &mut buffer);
    writer.reserve_dos_header_and_stub();
    writer.reserve_nt_headers(16);
    writer.reserve_section_headers(if n > 0 { 2 } else { 1 });
    let text = writer.reserve_text_section(16);
    let edata = (n > 0).then(|| writer.reserve_edata_section(edata_len));
    writer.write_dos_header_and_stub().expect("dos header");
    let mut characteristics = pe::IMAGE_FILE_EXECUTABLE_IMAGE | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE;
    if dll {
        characteristics |= pe::IMAGE_FILE_DLL;
    }
    writer.write_nt_headers(NtHeaders {
        machine,
        time_date_stamp: 0,
        characteristics,
        major_linker_version: 14,
        minor_linker_version: 0,
        address_of_entry_point: 0,
        image_base: 0x1_8000_0000,
        major_operating_system_version: 6,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 6,
        minor_subsystem_version: 0,
        subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_CUI,
        dll_characteristics: pe::DllFlags(0),
        size_of_stack_reserve: 0x10_0000,
        size_of_stack_commit: 0x1000,
        size_of_heap_reserve: 0x10_0000,
        size_of_heap_commit: 0x1000,
    });
    writer.write_section_headers();
    writer.write_section(text.file_offset, &[0xc3; 16]);
    if let Some(edata) = edata {
        // IMAGE_EXPORT_DIRECTORY, then the address, name and ordinal tables, then strings.
        let rva = edata.virtual_address;
        let functions = rva + 40;
        let names = functions + 4 * n;
        let ordinals = names + 4 * n;
        let dll_name_at = ordinals + 2 * n;
        let mut data = Vec::new();
        for word in [0, 0, 0, dll_name_at, 1, n, n, functions, names, ordinals] {
            let bytes = word.to_le_bytes();
            // MajorVersion and MinorVersion are two u16 in one word: zero either way.
            data.extend_from_slice(&bytes);
        }
        data.truncate(40);
        for _ in exports {
            data.extend_from_slice(&text.virtual_address.to_le_bytes());
        }
        let mut string_at = dll_name_at + dll_name.len() as u32;
        for export in exports {
            data.extend_from_slice(&string_at.to_le_bytes());
            string_at += export.len() as u32 + 1;
        }
        for index in 0..n as u16 {
            data.extend_from_slice(&index.to_le_bytes());
        }
        data.extend_from_slice(dll_name);
        for export in exports {
            data.extend_from_slice(export.as_bytes());
            data.push(0);
        }
        writer.write_section(edata.file_offset, &data);
    }
    buffer
}

#[test]
fn pe_libraries_are_checked_from_their_bytes() {
    let dll = small_pe(pe::IMAGE_FILE_MACHINE_AMD64, true, &[ROOT_SYMBOL, "other"]);
    assert_eq!(check_image_for(&dll, &PE_X86_64), Ok(()));
    let cut = dll.len() - 100;
    let cut_reason = reason(check_image_for(&dll[..cut], &PE_X86_64));
    assert!(cut_reason.contains("(truncated?)"), "{cut_reason}");
    assert_eq!(
        check_image_for(
            &small_pe(pe::IMAGE_FILE_MACHINE_AMD64, true, &["other"]),
            &PE_X86_64
        ),
        Err(ImageProblem::NoRootModule {
            symbol: ROOT_SYMBOL.to_owned()
        })
    );
    let arm = small_pe(pe::IMAGE_FILE_MACHINE_ARM64, true, &[ROOT_SYMBOL]);
    assert_eq!(
        check_image_for(&arm, &PE_X86_64).map_err(|e| e.to_string()),
        Err("built for aarch64, this host is x86_64".to_owned())
    );
    let exe = small_pe(pe::IMAGE_FILE_MACHINE_AMD64, false, &[ROOT_SYMBOL]);
    assert_eq!(
        reason(check_image_for(&exe, &PE_X86_64)),
        "not a DLL (an executable)"
    );
    assert_eq!(
        reason(check_image_for(&dll, &ELF_X86_64)),
        "a PE (Windows) file, but this host loads ELF libraries"
    );
}

/// A small 64-bit Mach-O file for `architecture` with data and a global symbol `name`,
/// turned into a dylib by its header's file type (the export check then reads the symbol
/// table, as object does for a Mach-O file without an exports trie).
fn small_macho(architecture: Architecture, name: &str) -> Vec<u8> {
    use object::write::{Object, StandardSection, Symbol, SymbolSection};
    let mut object = Object::new(BinaryFormat::MachO, architecture, Endianness::Little);
    let section = object.section_id(StandardSection::Data);
    let offset = object.append_section_data(section, &[7; 4096], 8);
    object.add_symbol(Symbol {
        name: name.as_bytes().to_vec(),
        value: offset,
        size: 64,
        kind: object::SymbolKind::Data,
        scope: object::SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Section(section),
        flags: object::SymbolFlags::None,
    });
    let mut bytes = object.write().expect("a Mach-O object");
    bytes[12..16].copy_from_slice(&macho::MH_DYLIB.0.to_le_bytes());
    bytes
}

#[test]
fn macho_libraries_are_checked_from_their_bytes() {
    let dylib = small_macho(Architecture::X86_64, ROOT_SYMBOL);
    assert_eq!(check_image_for(&dylib, &MACHO_X86_64), Ok(()));
    let cut_reason = reason(check_image_for(&dylib[..dylib.len() - 2048], &MACHO_X86_64));
    assert!(cut_reason.contains("truncated"), "{cut_reason}");
    assert_eq!(
        check_image_for(&small_macho(Architecture::X86_64, "other"), &MACHO_X86_64),
        Err(ImageProblem::NoRootModule {
            symbol: ROOT_SYMBOL.to_owned()
        })
    );
    let arm = small_macho(Architecture::Aarch64, ROOT_SYMBOL);
    assert_eq!(
        check_image_for(&arm, &MACHO_X86_64).map_err(|e| e.to_string()),
        Err("built for aarch64, this host is x86_64".to_owned())
    );
    let mut object_file = dylib.clone();
    object_file[12..16].copy_from_slice(&macho::MH_OBJECT.0.to_le_bytes());
    assert_eq!(
        reason(check_image_for(&object_file, &MACHO_X86_64)),
        "not a dynamic library or bundle (Mach-O file type 1)"
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for format in [BinaryFormat::Elf, BinaryFormat::Pe, BinaryFormat::MachO] {
            let target = Target { format, ..ELF_X86_64 };
            let result = check_image_for(&bytes, &target);
            if format == BinaryFormat::Elf && !bytes.starts_with(b"\x7fELF") {
                prop_assert!(result.is_err());
            }
        }
    }

    #[test]
    fn mutated_real_headers_never_panic(
        bytes in proptest::collection::vec((0_usize..1024, any::<u8>()), 0..16),
        words in proptest::collection::vec((0_usize..1024, any::<u64>()), 0..4),
        cut in proptest::option::of(any::<proptest::sample::Index>()),
    ) {
        let mut elf = plugin_bytes().to_vec();
        for (at, value) in bytes {
            if let Some(byte) = elf.get_mut(at) {
                *byte = value;
            }
        }
        for (at, value) in words {
            if let Some(slot) = elf.get_mut(at..at + 8) {
                slot.copy_from_slice(&value.to_le_bytes());
            }
        }
        let len = cut.map_or(elf.len(), |cut| cut.index(elf.len() + 1));
        let _ = check_image_for(&elf[..len], &ELF_X86_64);
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn a_root_symbol_smaller_than_abi_stables_header_is_refused() {
    use object::read::elf::{FileHeader as _, SectionHeader as _, Sym as _};
    // Shrink the root symbol's recorded size in the plugin's .dynsym.
    let mut bytes = plugin_bytes().to_vec();
    let header = elf::FileHeader64::<Endianness>::parse(&bytes[..]).expect("elf header");
    let endian = header.endian().expect("endian");
    let sections = header.sections(endian, &bytes[..]).expect("sections");
    let dynsym = sections
        .iter()
        .find(|s| s.sh_type(endian) == elf::SHT_DYNSYM)
        .expect(".dynsym");
    let symbols = sections
        .symbols(endian, &bytes[..], elf::SHT_DYNSYM)
        .expect("dynamic symbols");
    let index = symbols
        .iter()
        .position(|s| s.name(endian, symbols.strings()) == Ok(ROOT_SYMBOL.as_bytes()))
        .expect("the root symbol");
    let entry = usize::try_from(dynsym.sh_offset(endian)).expect("offset") + index * 24;
    // st_size is the last 8 bytes of an Elf64_Sym.
    bytes[entry + 16..entry + 24].copy_from_slice(&8_u64.to_le_bytes());
    let reason = reason(check_image(&bytes));
    assert!(
        reason.contains("root symbol") && reason.contains("is 8 bytes"),
        "{reason}"
    );
}
