//! What a library file is, read from its bytes before anything opens it.
//!
//! The dynamic linker runs a library's initialisers (ELF constructors, `.init_array`, Rust
//! statics with constructors, `DllMain`) inside `dlopen`/`LoadLibrary`, before any symbol can be
//! looked up, and it faults (SIGBUS) on a file whose headers promise data the file does not
//! hold. So a verdict like "not a plugin" must come from the file's bytes. [`check_image`] reads
//! them with the [`object`] crate and checks, in this order:
//!
//! 1. the format is this platform's (ELF, PE or Mach-O; a fat Mach-O file is checked for the
//!    host's slice) and the file is a shared library (not an executable or object file);
//! 2. every header table, loadable segment and section with file data lies inside the file, so a
//!    truncated copy is refused;
//! 3. the processor architecture (and byte order) is the host's;
//! 4. the export table holds abi_stable's root symbol
//!    ([`ROOT_MODULE_LOADER_NAME`](abi_stable::library::ROOT_MODULE_LOADER_NAME)); a library
//!    without it is not a plugin and is never opened, so its constructors never run.
//!
//! These checks keep non-plugins and broken files from running; they do not make a hostile file
//! harmless: a library that exports the root symbol still runs its initialisers when opened. Only
//! an allowlist (checked before opening too) keeps unknown builds from running at all.

use std::fmt;

use abi_stable::library::AbiHeader;

use object::{
    elf, macho, pe,
    read::{
        elf::{ElfFile, FileHeader, ProgramHeader as _, SectionHeader as _},
        macho::{FatArch, MachHeader, MachOFatFile32, MachOFatFile64, MachOFile},
        pe::{ImageNtHeaders, PeFile},
    },
    Architecture, BinaryFormat, Endianness, FileKind, NameOrOrdinal, Object, ObjectSection,
    ObjectSegment, ObjectSymbol,
};

/// The symbol every plugin library exports: abi_stable's root module loader.
pub const ROOT_SYMBOL: &str = abi_stable::library::ROOT_MODULE_LOADER_NAME;

/// Why [`check_image`] refused a library file. The messages read after "is not a loadable
/// library: " or a file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageProblem {
    /// The file is empty.
    #[error("empty file")]
    Empty,
    /// The file is not a complete shared library of this platform's format.
    #[error("{reason}")]
    Malformed {
        /// What is wrong, such as `"PT_LOAD segment 2 ends at byte 912344 but the file has 40960
        /// bytes (truncated?)"`.
        reason: String,
    },
    /// The file is a library for another processor.
    #[error("built for {found}, this host is {host}")]
    WrongArchitecture {
        /// The file's architecture, as Rust names it (`aarch64`, `x86_64`, `x86`...).
        found: String,
        /// The host's (`std::env::consts::ARCH`).
        host: String,
    },
    /// The file does not export abi_stable's root module.
    #[error("no root module (symbol {symbol} is not exported)")]
    NoRootModule {
        /// The missing symbol, [`ROOT_SYMBOL`].
        symbol: String,
    },
}

fn malformed(reason: impl Into<String>) -> ImageProblem {
    ImageProblem::Malformed {
        reason: reason.into(),
    }
}

/// The platform a library must be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub format: BinaryFormat,
    pub architecture: Architecture,
    pub little_endian: bool,
}

impl Target {
    /// This host, or `None` on a platform whose library format the loader does not know (then
    /// [`check_image`] checks nothing and the dynamic linker decides).
    pub fn host() -> Option<Target> {
        let format = if cfg!(windows) {
            BinaryFormat::Pe
        } else if cfg!(target_vendor = "apple") {
            BinaryFormat::MachO
        } else if cfg!(any(
            target_os = "linux",
            target_os = "android",
            target_os = "freebsd",
            target_os = "dragonfly",
            target_os = "netbsd",
            target_os = "openbsd",
            target_os = "solaris",
            target_os = "illumos",
            target_os = "fuchsia",
            target_os = "haiku",
            target_os = "redox",
        )) {
            BinaryFormat::Elf
        } else {
            return None;
        };
        Some(Target {
            format,
            architecture: host_architecture()?,
            little_endian: cfg!(target_endian = "little"),
        })
    }
}

fn host_architecture() -> Option<Architecture> {
    let pointer_64 = cfg!(target_pointer_width = "64");
    Some(match std::env::consts::ARCH {
        "x86_64" if pointer_64 => Architecture::X86_64,
        "x86_64" => Architecture::X86_64_X32,
        "x86" => Architecture::I386,
        "aarch64" if pointer_64 => Architecture::Aarch64,
        "aarch64" => Architecture::Aarch64_Ilp32,
        "arm" => Architecture::Arm,
        "riscv64" => Architecture::Riscv64,
        "riscv32" => Architecture::Riscv32,
        "powerpc64" => Architecture::PowerPc64,
        "powerpc" => Architecture::PowerPc,
        "s390x" => Architecture::S390x,
        "loongarch64" => Architecture::LoongArch64,
        "mips" => Architecture::Mips,
        "mips64" => Architecture::Mips64,
        "sparc64" => Architecture::Sparc64,
        _ => return None,
    })
}

/// An architecture as Rust's `std::env::consts::ARCH` names it, so the two sides of a
/// "built for ..., this host is ..." message use the same words.
pub(crate) fn architecture_name(architecture: Architecture) -> String {
    let name = match architecture {
        Architecture::X86_64 => "x86_64",
        Architecture::X86_64_X32 => "x86_64 (x32)",
        Architecture::I386 => "x86",
        Architecture::Aarch64 => "aarch64",
        Architecture::Aarch64_Ilp32 => "aarch64 (ilp32)",
        Architecture::Arm => "arm",
        Architecture::Riscv64 => "riscv64",
        Architecture::Riscv32 => "riscv32",
        Architecture::PowerPc64 => "powerpc64",
        Architecture::PowerPc => "powerpc",
        Architecture::S390x => "s390x",
        Architecture::LoongArch64 => "loongarch64",
        Architecture::Mips => "mips",
        Architecture::Mips64 => "mips64",
        Architecture::Sparc64 => "sparc64",
        Architecture::Unknown => "an unknown architecture",
        other => return format!("{other:?}").to_lowercase(),
    };
    name.to_owned()
}

fn host_name(target: &Target) -> String {
    let mut name = architecture_name(target.architecture);
    if name == "an unknown architecture" {
        name = std::env::consts::ARCH.to_owned();
    }
    name
}

/// `format_name` with its article: "an ELF", "a PE (Windows)".
fn a_format(format: BinaryFormat) -> String {
    let name = format_name(format);
    let article = if name.starts_with(['E', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

pub(crate) fn format_name(format: BinaryFormat) -> &'static str {
    match format {
        BinaryFormat::Elf => "ELF",
        BinaryFormat::Pe => "PE (Windows)",
        BinaryFormat::MachO => "Mach-O (macOS)",
        BinaryFormat::Coff => "COFF object",
        BinaryFormat::Wasm => "WebAssembly",
        BinaryFormat::Xcoff => "XCOFF (AIX)",
        _ => "unknown format",
    }
}

/// Checks that `bytes` hold a complete shared library of this platform, for this processor,
/// that exports the plugin root symbol, in this order: the format is this platform's (a fat
/// Mach-O file is checked for the host's slice) and the file is a shared library; every header
/// table, loadable segment and section with file data lies inside the file; the architecture
/// and byte order are the host's; the export table holds [`ROOT_SYMBOL`].
///
/// Pure and total: no `unsafe`, no panics, nothing run or opened; allocation beyond the error
/// message only for the export table being searched.
///
/// # Errors
///
/// An [`ImageProblem`] saying what is wrong: [`ImageProblem::Malformed`] for a file of another
/// format, a truncated one or one that is not a shared library, with messages such as
/// `"not an ELF file (bad magic)"` or `"PT_LOAD segment 2 ends at byte 912344 but the file has
/// 40960 bytes (truncated?)"` (segments and sections numbered by their index in their header
/// table, as `readelf` does); [`ImageProblem::WrongArchitecture`] (`"built for aarch64, this
/// host is x86_64"`); [`ImageProblem::NoRootModule`].
///
/// # Platform-specific behaviour
///
/// ELF on Linux, Android, the BSDs, Solaris/illumos, Fuchsia, Haiku and Redox; PE on Windows;
/// Mach-O on Apple platforms. On any other platform only emptiness is checked.
pub fn check_image(bytes: &[u8]) -> Result<(), ImageProblem> {
    match Target::host() {
        Some(target) => check_image_for(bytes, &target),
        None if bytes.is_empty() => Err(ImageProblem::Empty),
        None => Ok(()),
    }
}

/// [`check_image`] for a given target (unit tests check PE and Mach-O files on any host).
pub(crate) fn check_image_for(bytes: &[u8], target: &Target) -> Result<(), ImageProblem> {
    if bytes.is_empty() {
        return Err(ImageProblem::Empty);
    }
    let expected = format_name(target.format);
    let wrong_format = |found: BinaryFormat| {
        malformed(format!(
            "{} file, but this host loads {expected} libraries",
            a_format(found)
        ))
    };
    let kind = FileKind::parse(bytes).ok();
    match (target.format, kind) {
        (BinaryFormat::Elf, Some(FileKind::Elf32)) => {
            check_elf::<elf::FileHeader32<Endianness>>(bytes, target)
        }
        (BinaryFormat::Elf, Some(FileKind::Elf64)) => {
            check_elf::<elf::FileHeader64<Endianness>>(bytes, target)
        }
        (BinaryFormat::Pe, Some(FileKind::Pe32)) => check_pe::<pe::ImageNtHeaders32>(bytes, target),
        (BinaryFormat::Pe, Some(FileKind::Pe64)) => check_pe::<pe::ImageNtHeaders64>(bytes, target),
        (BinaryFormat::MachO, Some(FileKind::MachO32)) => {
            check_macho::<macho::MachHeader32<Endianness>>(bytes, target)
        }
        (BinaryFormat::MachO, Some(FileKind::MachO64)) => {
            check_macho::<macho::MachHeader64<Endianness>>(bytes, target)
        }
        (BinaryFormat::MachO, Some(FileKind::MachOFat32)) => {
            let fat = MachOFatFile32::parse(bytes).map_err(|e| malformed(format!("{e}")))?;
            check_fat_slice(bytes, fat.arches(), target)
        }
        (BinaryFormat::MachO, Some(FileKind::MachOFat64)) => {
            let fat = MachOFatFile64::parse(bytes).map_err(|e| malformed(format!("{e}")))?;
            check_fat_slice(bytes, fat.arches(), target)
        }
        (format, kind) => Err(match kind.and_then(kind_format) {
            Some(found) if found != format => wrong_format(found),
            _ if format == BinaryFormat::Elf && bytes.get(..4) != Some(&elf::ELFMAG[..]) => {
                // Also a header cut inside the magic: it cannot be told from another file.
                malformed("not an ELF file (bad magic)")
            }
            _ if format == BinaryFormat::Elf => elf_ident_problem(bytes),
            _ => malformed(format!("not a {expected} library")),
        }),
    }
}

/// What is wrong with a file that starts with the ELF magic but that `object` cannot classify.
fn elf_ident_problem(bytes: &[u8]) -> ImageProblem {
    let len = bytes.len();
    let (bits, needs) = match bytes.get(4) {
        Some(1) => (32, 52),
        Some(2) | None => (64, 64),
        Some(class) => {
            return malformed(format!("unsupported ELF class {class} (expected 1 or 2)"))
        }
    };
    if len < needs {
        return malformed(format!(
            "truncated ELF header: the file has {len} bytes, a {bits}-bit header needs {needs}"
        ));
    }
    malformed(format!(
        "unsupported ELF header (class {}, byte order {}, version {})",
        bytes[4], bytes[5], bytes[6]
    ))
}

fn kind_format(kind: FileKind) -> Option<BinaryFormat> {
    Some(match kind {
        FileKind::Elf32 | FileKind::Elf64 => BinaryFormat::Elf,
        FileKind::Pe32 | FileKind::Pe64 => BinaryFormat::Pe,
        FileKind::MachO32 | FileKind::MachO64 | FileKind::MachOFat32 | FileKind::MachOFat64 => {
            BinaryFormat::MachO
        }
        FileKind::Coff | FileKind::CoffBig | FileKind::CoffImport => BinaryFormat::Coff,
        _ => return None,
    })
}

/// `"... ends at byte {end} but the file has {len} bytes (truncated?)"` unless the range fits.
fn inside(what: impl fmt::Display, offset: u64, size: u64, len: u64) -> Result<(), ImageProblem> {
    let end = offset.checked_add(size).ok_or_else(|| {
        malformed(format!(
            "{what} has offset {offset} and size {size}, which overflow"
        ))
    })?;
    if end > len {
        return Err(malformed(format!(
            "{what} ends at byte {end} but the file has {len} bytes (truncated?)"
        )));
    }
    Ok(())
}

fn check_architecture(
    found: Architecture,
    little_endian: bool,
    target: &Target,
) -> Result<(), ImageProblem> {
    if found == target.architecture && little_endian == target.little_endian {
        return Ok(());
    }
    let mut found_name = architecture_name(found);
    if found == target.architecture {
        found_name.push_str(if little_endian {
            " (little-endian)"
        } else {
            " (big-endian)"
        });
    }
    Err(ImageProblem::WrongArchitecture {
        found: found_name,
        host: host_name(target),
    })
}

/// Whether an export table lists the root symbol (Mach-O and 32-bit Windows names may carry a
/// leading underscore).
fn exports_root<'data>(
    exports: impl Iterator<Item = object::Result<object::Export<'data>>>,
) -> Result<(), ImageProblem> {
    let root = ROOT_SYMBOL.as_bytes();
    for export in exports {
        let export = export.map_err(|e| malformed(format!("unreadable export table: {e}")))?;
        if let NameOrOrdinal::Name(name) = export.name() {
            if name == root || name.strip_prefix(b"_") == Some(root) {
                return Ok(());
            }
        }
    }
    Err(ImageProblem::NoRootModule {
        symbol: ROOT_SYMBOL.to_owned(),
    })
}

fn check_elf<Elf>(bytes: &[u8], target: &Target) -> Result<(), ImageProblem>
where
    Elf: FileHeader<Endian = Endianness>,
{
    let len = bytes.len() as u64;
    let bits = if size_of::<Elf::Word>() == 8 { 64 } else { 32 };
    let header_size = size_of::<Elf>() as u64;
    if len < header_size {
        return Err(malformed(format!(
            "truncated ELF header: the file has {len} bytes, a {bits}-bit header needs {header_size}"
        )));
    }
    let header = Elf::parse(bytes).map_err(|_| {
        let ident = &bytes[4..7];
        malformed(format!(
            "unsupported ELF header (class {}, byte order {}, version {})",
            ident[0], ident[1], ident[2]
        ))
    })?;
    let endian = header
        .endian()
        .map_err(|_| malformed("unsupported ELF byte order"))?;
    let e_type = header.e_type(endian);
    if e_type != elf::ET_DYN {
        let kind = match e_type {
            elf::ET_NONE => "no file type",
            elf::ET_REL => "a relocatable object",
            elf::ET_EXEC => "an executable",
            elf::ET_CORE => "a core dump",
            _ => "an unknown type",
        };
        return Err(malformed(format!(
            "not a shared library (e_type {}, {kind})",
            e_type.0
        )));
    }

    // Program headers: the dynamic linker maps every PT_LOAD segment's file range and faults
    // (SIGBUS) on pages past the end of the file.
    let phoff: u64 = header.e_phoff(endian).into();
    let phnum = header.e_phnum(endian);
    if phnum == elf::PN_XNUM {
        return Err(malformed(
            "uses extended program header numbering (PN_XNUM), which dynamic linkers do not support",
        ));
    }
    if phoff == 0 || phnum == 0 {
        return Err(malformed("no program headers"));
    }
    let phentsize = u64::from(header.e_phentsize(endian));
    let wanted = size_of::<Elf::ProgramHeader>() as u64;
    if phentsize != wanted {
        return Err(malformed(format!(
            "program header entry size is {phentsize} bytes, a {bits}-bit ELF file needs {wanted}"
        )));
    }
    inside(
        format_args!("program header table ({phnum} entries at byte {phoff})"),
        phoff,
        u64::from(phnum) * phentsize,
        len,
    )?;
    let segments = header
        .program_headers(endian, bytes)
        .map_err(|e| malformed(format!("unreadable program headers: {e}")))?;
    let mut loads = 0;
    for (index, segment) in segments.iter().enumerate() {
        if segment.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        loads += 1;
        inside(
            format_args!("PT_LOAD segment {index}"),
            segment.p_offset(endian).into(),
            segment.p_filesz(endian).into(),
            len,
        )?;
    }
    if loads == 0 {
        return Err(malformed("no PT_LOAD segment"));
    }

    // Section headers: linkers write the table last, so it tells whether the whole file
    // arrived; the export table (.dynsym) is found through it.
    let shoff: u64 = header.e_shoff(endian).into();
    if shoff == 0 {
        return Err(malformed(
            "no section headers, so its export table cannot be read before it is opened",
        ));
    }
    let shentsize = u64::from(header.e_shentsize(endian));
    let wanted = size_of::<Elf::SectionHeader>() as u64;
    if shentsize != wanted {
        return Err(malformed(format!(
            "section header entry size is {shentsize} bytes, a {bits}-bit ELF file needs {wanted}"
        )));
    }
    // e_shnum 0 with a table means extended numbering: entry 0 holds the count; it must fit.
    let shnum = u64::from(header.e_shnum(endian)).max(1);
    inside(
        format_args!("section header table ({shnum} entries at byte {shoff})"),
        shoff,
        shnum * shentsize,
        len,
    )?;
    let sections = header
        .section_headers(endian, bytes)
        .map_err(|e| malformed(format!("unreadable section headers: {e}")))?;
    for (index, section) in sections.iter().enumerate() {
        if section.sh_type(endian) == elf::SHT_NOBITS || section.sh_type(endian) == elf::SHT_NULL {
            continue;
        }
        inside(
            format_args!("section {index}"),
            section.sh_offset(endian).into(),
            section.sh_size(endian).into(),
            len,
        )?;
    }

    let file =
        ElfFile::<Elf>::parse(bytes).map_err(|e| malformed(format!("unreadable ELF file: {e}")))?;
    check_architecture(file.architecture(), file.is_little_endian(), target)?;
    exports_root(
        file.exports()
            .map_err(|e| malformed(format!("unreadable export table: {e}")))?,
    )?;
    // abi_stable first reads an `AbiHeader` at the root symbol's address (and the rest of the
    // `LibHeader` only once that header matches its own): a smaller symbol would be read past
    // its end. ELF records symbol sizes; PE and Mach-O do not.
    let header = size_of::<AbiHeader>() as u64;
    let root = file
        .dynamic_symbols()
        .find(|symbol| symbol.is_definition() && symbol.name_bytes() == Ok(ROOT_SYMBOL.as_bytes()));
    match root.map(|symbol| symbol.size()) {
        Some(size) if size != 0 && size < header => Err(malformed(format!(
            "its root symbol {ROOT_SYMBOL} is {size} bytes, smaller than abi_stable's header \
             ({header} bytes)"
        ))),
        _ => Ok(()),
    }
}

fn check_pe<Pe: ImageNtHeaders>(bytes: &[u8], target: &Target) -> Result<(), ImageProblem> {
    let len = bytes.len() as u64;
    let file = PeFile::<Pe>::parse(bytes)
        .map_err(|e| malformed(format!("unreadable PE file: {e} (truncated?)")))?;
    let characteristics = file
        .nt_headers()
        .file_header()
        .characteristics
        .get(object::LittleEndian);
    if characteristics.0 & pe::IMAGE_FILE_DLL.0 == 0 {
        return Err(malformed("not a DLL (an executable)"));
    }
    use object::read::pe::ImageOptionalHeader as _;
    let headers = u64::from(file.nt_headers().optional_header().size_of_headers());
    inside("the PE headers", 0, headers, len)?;
    for (index, section) in file.section_table().iter().enumerate() {
        // The raw size, not object's `pe_file_range` (which stops at the virtual size): the
        // loader reads all of it.
        let offset = section.pointer_to_raw_data.get(object::LittleEndian);
        let size = section.size_of_raw_data.get(object::LittleEndian);
        inside(
            format_args!(
                "section {index} ({})",
                String::from_utf8_lossy(section.raw_name())
            ),
            offset.into(),
            size.into(),
            len,
        )?;
    }
    check_architecture(file.architecture(), true, target)?;
    exports_root(
        file.exports()
            .map_err(|e| malformed(format!("unreadable export table: {e}")))?,
    )
}

fn check_fat_slice<Fat: FatArch>(
    bytes: &[u8],
    arches: &[Fat],
    target: &Target,
) -> Result<(), ImageProblem> {
    let len = bytes.len() as u64;
    for (index, arch) in arches.iter().enumerate() {
        let (offset, size) = arch.file_range();
        inside(format_args!("fat slice {index}"), offset, size, len)?;
    }
    let Some(slice) = arches
        .iter()
        .find(|a| a.architecture() == target.architecture)
    else {
        let found: Vec<String> = arches
            .iter()
            .map(|a| architecture_name(a.architecture()))
            .collect();
        return Err(ImageProblem::WrongArchitecture {
            found: if found.is_empty() {
                "no architecture".to_owned()
            } else {
                found.join(", ")
            },
            host: host_name(target),
        });
    };
    let data = slice
        .data(bytes)
        .map_err(|e| malformed(format!("unreadable fat slice: {e}")))?;
    match FileKind::parse(data) {
        Ok(FileKind::MachO64) => check_macho::<macho::MachHeader64<Endianness>>(data, target),
        Ok(FileKind::MachO32) => check_macho::<macho::MachHeader32<Endianness>>(data, target),
        _ => Err(malformed(
            "the fat slice for this host is not a Mach-O file",
        )),
    }
}

fn check_macho<Mach>(bytes: &[u8], target: &Target) -> Result<(), ImageProblem>
where
    Mach: MachHeader<Endian = Endianness>,
{
    let len = bytes.len() as u64;
    let file = MachOFile::<Mach>::parse(bytes)
        .map_err(|e| malformed(format!("unreadable Mach-O file: {e} (truncated?)")))?;
    let header =
        Mach::parse(bytes, 0).map_err(|e| malformed(format!("unreadable Mach-O header: {e}")))?;
    let endian = header
        .endian()
        .map_err(|_| malformed("unsupported Mach-O byte order"))?;
    let filetype = header.filetype(endian);
    if filetype != macho::MH_DYLIB && filetype != macho::MH_BUNDLE {
        return Err(malformed(format!(
            "not a dynamic library or bundle (Mach-O file type {})",
            filetype.0
        )));
    }
    for (index, segment) in file.segments().enumerate() {
        let (offset, size) = segment.file_range();
        let name = segment.name().ok().flatten().unwrap_or("?");
        inside(format_args!("segment {index} ({name})"), offset, size, len)?;
    }
    for (index, section) in file.sections().enumerate() {
        if let Some((offset, size)) = section.file_range() {
            let name = section.name().unwrap_or("?");
            inside(format_args!("section {index} ({name})"), offset, size, len)?;
        }
    }
    check_architecture(file.architecture(), file.is_little_endian(), target)?;
    exports_root(
        file.exports()
            .map_err(|e| malformed(format!("unreadable export table: {e}")))?,
    )
}

#[cfg(test)]
mod tests;
