// Marks one GNU symbol-version need as weak in an ELF shared library, so the dynamic loader
// accepts the library on systems whose libstdc++ lacks that version (see README: "Linux").
// Used by Hcsc.TorchSharpNativeFix.targets as an inline MSBuild task, and compiled into the
// tests (with HCSC_ELF_ONLY defined) to test the ELF logic on its own. MSBuild compiles it
// against netstandard2.0, so it keeps to that API.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

/// <summary>What <see cref="ElfVersionNeedPatcher.MarkWeak"/> did to a file.</summary>
public enum VersionNeedPatchOutcome
{
    /// <summary>The version need was strong and is now weak; the file was rewritten.</summary>
    Patched,
    /// <summary>The version need was already weak; the file was not touched.</summary>
    AlreadyWeak,
    /// <summary>The library does not need that version; the file was not touched.</summary>
    NotNeeded,
}

/// <summary>Reads and edits the <c>.gnu.version_r</c> (version needs) section of a 64-bit little-endian ELF file.</summary>
public static class ElfVersionNeedPatcher
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    /// <summary>Returns the <c>vna_flags</c> of every version need in the file, by version name.</summary>
    public static IReadOnlyDictionary<string, ushort> ReadVersionNeeds(byte[] elf, string path)
    {
        var result = new Dictionary<string, ushort>(StringComparer.Ordinal);
        foreach (var (name, flagsOffset) in EnumerateVersionNeeds(elf, path))
        {
            result[name] = BitConverter.ToUInt16(elf, flagsOffset);
        }

        return result;
    }

    /// <summary>
    /// Sets VER_FLG_WEAK on the version need <paramref name="versionName"/> of the ELF file at
    /// <paramref name="path"/>. Idempotent; the file is replaced atomically (write, then rename,
    /// which also breaks any hard link into a package cache) and keeps its last-write time, so
    /// MSBuild's incremental copy still sees it as up to date.
    /// </summary>
    public static VersionNeedPatchOutcome MarkWeak(string path, string versionName)
    {
        byte[] elf = File.ReadAllBytes(path);
        int flagsOffset = -1;
        foreach (var (name, offset) in EnumerateVersionNeeds(elf, path))
        {
            if (name == versionName)
            {
                flagsOffset = offset;
            }
        }

        if (flagsOffset < 0)
        {
            return VersionNeedPatchOutcome.NotNeeded;
        }

        ushort flags = BitConverter.ToUInt16(elf, flagsOffset);
        if ((flags & VerFlgWeak) != 0)
        {
            return VersionNeedPatchOutcome.AlreadyWeak;
        }

        BitConverter.GetBytes((ushort)(flags | VerFlgWeak)).CopyTo(elf, flagsOffset);
        DateTime lastWrite = File.GetLastWriteTimeUtc(path);
        string temp = path + ".hcsc-tmp";
        File.WriteAllBytes(temp, elf);
        File.SetLastWriteTimeUtc(temp, lastWrite);
        File.Replace(temp, path, null); // a rename: atomic, and never writes through a hard link
        return VersionNeedPatchOutcome.Patched;
    }

    /// <summary>True when the shared library at <paramref name="path"/> names the symbol version (a byte search of its string table).</summary>
    public static bool DefinesVersionString(string path, string versionName)
    {
        byte[] needle = Encoding.ASCII.GetBytes(versionName + "\0");
        byte[] haystack = File.ReadAllBytes(path);
        for (int start = Array.IndexOf(haystack, needle[0]); start >= 0 && start <= haystack.Length - needle.Length; start = Array.IndexOf(haystack, needle[0], start + 1))
        {
            int i = 1;
            while (i < needle.Length && haystack[start + i] == needle[i])
            {
                i++;
            }

            if (i == needle.Length)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// The libstdc++ the dynamic loader would most likely pick: the first <c>libstdc++.so.6</c>
    /// on LD_LIBRARY_PATH, then in the standard library directories; null when none is found.
    /// </summary>
    public static string? FindHostLibStdCxx()
    {
        var directories = new List<string>();
        string? ldLibraryPath = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
        if (!string.IsNullOrEmpty(ldLibraryPath))
        {
            directories.AddRange(ldLibraryPath.Split(new[] { ':' }, StringSplitOptions.RemoveEmptyEntries));
        }

        directories.AddRange(new[]
        {
            "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
            "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib64", "/usr/local/lib",
        });
        foreach (string directory in directories)
        {
            string candidate = Path.Combine(directory, "libstdc++.so.6");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    private static IEnumerable<(string Name, int FlagsOffset)> EnumerateVersionNeeds(byte[] elf, string path)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
        {
            throw new InvalidDataException($"'{path}' is not an ELF file (bad magic). Expected TorchSharp's native libLibTorchSharp.so.");
        }

        if (elf[4] != 2 || elf[5] != 1)
        {
            throw new InvalidDataException(
                $"'{path}' is an ELF file of class {elf[4]} and data encoding {elf[5]}; only 64-bit little-endian (class 2, encoding 1) is supported.");
        }

        long sectionHeaderOffset = checked((long)BitConverter.ToUInt64(elf, 0x28));
        int sectionHeaderSize = BitConverter.ToUInt16(elf, 0x3a);
        int sectionCount = BitConverter.ToUInt16(elf, 0x3c);
        if (sectionHeaderOffset <= 0 || sectionHeaderSize < 64 || sectionHeaderOffset + ((long)sectionHeaderSize * sectionCount) > elf.Length)
        {
            throw new InvalidDataException($"'{path}' has no valid section header table (offset {sectionHeaderOffset}, {sectionCount} entries of {sectionHeaderSize} bytes, file {elf.Length} bytes).");
        }

        for (int s = 0; s < sectionCount; s++)
        {
            int header = checked((int)(sectionHeaderOffset + ((long)s * sectionHeaderSize)));
            if (BitConverter.ToUInt32(elf, header + 4) != ShtGnuVerneed)
            {
                continue;
            }

            int sectionOffset = checked((int)BitConverter.ToUInt64(elf, header + 0x18));
            int linkedStringTable = checked((int)BitConverter.ToUInt32(elf, header + 0x28));
            int entryCount = checked((int)BitConverter.ToUInt32(elf, header + 0x2c)); // sh_info: number of Verneed entries
            int stringsHeader = checked((int)(sectionHeaderOffset + ((long)linkedStringTable * sectionHeaderSize)));
            int stringsOffset = checked((int)BitConverter.ToUInt64(elf, stringsHeader + 0x18));

            int verneed = sectionOffset;
            for (int n = 0; n < entryCount; n++)
            {
                int auxCount = BitConverter.ToUInt16(elf, verneed + 2);
                int vernaux = verneed + checked((int)BitConverter.ToUInt32(elf, verneed + 8));
                for (int a = 0; a < auxCount; a++)
                {
                    int nameOffset = stringsOffset + checked((int)BitConverter.ToUInt32(elf, vernaux + 8));
                    int end = Array.IndexOf(elf, (byte)0, nameOffset);
                    yield return (Encoding.ASCII.GetString(elf, nameOffset, end - nameOffset), vernaux + 4); // vna_flags follows the 4-byte vna_hash
                    vernaux += checked((int)BitConverter.ToUInt32(elf, vernaux + 12));
                }

                verneed += checked((int)BitConverter.ToUInt32(elf, verneed + 12));
            }

            yield break;
        }

        throw new InvalidDataException($"'{path}' has no .gnu.version_r section: it is not the GNU/Linux build of libLibTorchSharp.so this fix expects.");
    }
}

#if !HCSC_ELF_ONLY
/// <summary>
/// MSBuild task: on Linux, when the host libstdc++ lacks <see cref="VersionName"/> (or
/// <see cref="Mode"/> is <c>always</c>), marks that version need weak in each of <see cref="Files"/>.
/// </summary>
public sealed class HcscMarkVersionNeedWeak : Microsoft.Build.Utilities.Task
{
    /// <summary>Copies of libLibTorchSharp.so in a build or publish output (never the package cache).</summary>
    [Microsoft.Build.Framework.Required]
    public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();

    /// <summary>The GNU version name to make weak, e.g. GLIBCXX_3.4.32.</summary>
    [Microsoft.Build.Framework.Required]
    public string VersionName { get; set; } = string.Empty;

    /// <summary><c>auto</c> (patch only when the host lacks the version) or <c>always</c>.</summary>
    public string Mode { get; set; } = "auto";

    /// <inheritdoc />
    public override bool Execute()
    {
        if (Mode == "auto")
        {
            string? libStdCxx = ElfVersionNeedPatcher.FindHostLibStdCxx();
            if (libStdCxx != null && ElfVersionNeedPatcher.DefinesVersionString(libStdCxx, VersionName))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"Hcsc: {libStdCxx} provides {VersionName}; libLibTorchSharp.so left as it is.");
                return true;
            }
        }

        foreach (var item in Files)
        {
            string path = item.ItemSpec;
            try
            {
                var outcome = ElfVersionNeedPatcher.MarkWeak(path, VersionName);
                var importance = outcome == VersionNeedPatchOutcome.Patched ? Microsoft.Build.Framework.MessageImportance.Normal : Microsoft.Build.Framework.MessageImportance.Low;
                Log.LogMessage(importance, $"Hcsc: {VersionName} need in {path}: {outcome}.");
            }
            catch (Exception e) when (e is InvalidDataException || e is IOException || e is UnauthorizedAccessException || e is ArgumentException)
            {
                Log.LogError(
                    $"Hcsc could not make the {VersionName} need of '{path}' weak: {e.Message} " +
                    "TorchSharp may then fail to load on this system. Set the MSBuild property HcscTorchSharpNativeFix=never to skip this step.");
            }
        }

        return !Log.HasLoggedErrors;
    }
}
#endif
