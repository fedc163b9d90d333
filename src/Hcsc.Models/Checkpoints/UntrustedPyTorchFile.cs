using System.IO.Compression;

namespace Hcsc.Models.Checkpoints;

/// <summary>
/// Vets a <c>torch.save</c> file before anything in it is unpickled, the way <c>torch.load(weights_only=True)</c> does:
/// the zip structure and every declared size are checked against the file, and the pickle's opcodes are walked
/// (nothing is constructed) so that only what a tensor checkpoint needs is accepted. <see cref="PyTorchStateDict.Read"/>
/// calls it on every file.
/// </summary>
/// <remarks>
/// <para>Accepted: dicts, lists, tuples, strings, numbers, booleans, <c>None</c> and bytes, built by the pickle opcodes of
/// protocols 0 to 5, plus the globals of <see cref="AllowedGlobals"/>, used only the way <c>torch.save</c> uses them
/// (<c>_rebuild_tensor_v2</c> called on a storage reference, <c>OrderedDict</c> called or instantiated, a storage class
/// named in a persistent id). Any other global, and the opcodes that build arbitrary objects (<c>INST</c>, <c>OBJ</c>,
/// <c>EXT1/2/4</c>, text <c>PERSID</c>, out-of-band buffers), are refused: the file may be malicious.</para>
/// <para>Memory is bounded before anything is allocated from the file: the pickle is at most <see cref="MaxPickleBytes"/>;
/// entries stored uncompressed (as <c>torch.save</c> writes them) must fit in the file; entries that are compressed (as
/// TorchSharp.PyBridge, hence <see cref="PyTorchStateDict.Write"/>, writes them) may declare at most
/// <see cref="MaxCompressionRatio"/> times the file's size in all, or <see cref="CompressedBytesFloor"/> if that is more;
/// every tensor must fit inside its storage entry; and the tensors rebuilt may add up to at most twice the storage bytes
/// they come from (shared storages are rebuilt once per tensor).</para>
/// </remarks>
public static partial class UntrustedPyTorchFile
{
    /// <summary>The largest <c>data.pkl</c> accepted, in bytes (64 MiB; a ResNet-50 checkpoint's is well under 1 MiB).</summary>
    public const long MaxPickleBytes = 64L << 20;

    /// <summary>Compressed entries may declare, in all, this many times the file's size uncompressed (or <see cref="CompressedBytesFloor"/>).</summary>
    public const long MaxCompressionRatio = 64;

    /// <summary>Compressed entries may always declare this many bytes in all, whatever the file's size (256 MiB).</summary>
    public const long CompressedBytesFloor = 256L << 20;

    /// <summary>
    /// The most values a pickle may push (2 million; a ResNet-50 training checkpoint pushes tens of thousands): unpickling
    /// builds an object for each, so this bounds the memory a small pickle can make the unpickler use.
    /// </summary>
    public const long MaxPickleValues = 2_000_000;

    /// <summary>The most dimensions a tensor may declare (libtorch's own limit).</summary>
    public const int MaxTensorDimensions = 64;

    /// <summary>Deflate cannot expand data by more than about 1032 to 1: a declared size beyond that is forged.</summary>
    private const long DeflateMaxRatio = 1032;

    /// <summary>The storage classes <c>torch.save</c> names in its persistent ids, with their element sizes and dtypes (those TorchSharp.PyBridge reads).</summary>
    private static readonly Dictionary<string, (int Size, string DType)> StorageTypes = new(StringComparer.Ordinal)
    {
        ["DoubleStorage"] = (8, "float64"),
        ["FloatStorage"] = (4, "float32"),
        ["HalfStorage"] = (2, "float16"),
        ["BFloat16Storage"] = (2, "bfloat16"),
        ["LongStorage"] = (8, "int64"),
        ["IntStorage"] = (4, "int32"),
        ["ShortStorage"] = (2, "int16"),
        ["CharStorage"] = (1, "int8"),
        ["ByteStorage"] = (1, "uint8"),
        ["BoolStorage"] = (1, "bool"),
        ["ComplexFloatStorage"] = (8, "complex64"),
        ["ComplexDoubleStorage"] = (16, "complex128"),
    };

    private const string OrderedDict = "collections.OrderedDict";
    private const string RebuildTensor = "torch._utils._rebuild_tensor_v2";
    private const string RebuildParameter = "torch._utils._rebuild_parameter";

    /// <summary>
    /// The only globals (<c>module.name</c>) a file may import: what <c>torch.save</c> writes for state dicts and for MoCo /
    /// HCSC training checkpoints (whose epoch, arch and optimizer state are plain numbers, strings, lists and dicts).
    /// </summary>
    public static IReadOnlySet<string> AllowedGlobals { get; } =
        new HashSet<string>(new[] { OrderedDict, RebuildTensor, RebuildParameter }.Concat(StorageTypes.Keys.Select(s => "torch." + s)), StringComparer.Ordinal);

    /// <summary>Checks the file at <paramref name="path"/>; returns normally when it is safe to unpickle.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">
    /// The file is empty, not a zip archive, truncated, declares sizes that do not fit (a zip bomb, an oversized pickle, a
    /// tensor larger than its storage), lacks an entry it refers to, or its pickle imports or builds anything a tensor
    /// checkpoint does not need. The message names the file and the problem.
    /// </exception>
    public static void Verify(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var stream = File.OpenRead(path);
        Verify(stream, path);
    }

    /// <summary>Checks the seekable <paramref name="stream"/> (the file <paramref name="path"/>, named in errors); leaves it open.</summary>
    /// <exception cref="InvalidDataException">See <see cref="Verify(string)"/>.</exception>
    public static void Verify(Stream stream, string path)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(path);
        var fileLength = stream.Length;
        if (fileLength == 0)
        {
            throw Refuse(path, "is empty (0 bytes), so it is not a PyTorch file.");
        }

        stream.Position = 0;
        Span<byte> head = stackalloc byte[4];
        var got = stream.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        if (got < 4 || head[0] != 0x50 || head[1] != 0x4b || head[2] != 0x03 || head[3] != 0x04)
        {
            throw Refuse(path,
                $"is not a zip archive (it starts with the bytes {Convert.ToHexString(head[..got])}, not a zip header), so it is not a torch.save file of PyTorch 1.6 or later. Files written by torch.save in PyTorch 1.6 or later are supported; re-save older ones with torch.save(obj, path) in a recent PyTorch.");
        }

        stream.Position = 0;
        ZipArchive? archive = null;
        IReadOnlyList<ZipArchiveEntry> entries;
        try
        {
            archive = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            entries = archive.Entries;
        }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentException or NotSupportedException)
        {
            archive?.Dispose();
            throw Refuse(path, $"is truncated or corrupt: its zip directory cannot be read ({e.Message}).", e);
        }

        using (archive)
        {
            // The same choice TorchSharp.PyBridge makes (the first entry whose name ends with data.pkl, compared the way it
            // compares), so that the pickle checked here is the one it unpickles.
            var pickleEntry = entries.FirstOrDefault(e => e.Name.EndsWith("data.pkl", StringComparison.CurrentCulture));
            if (pickleEntry is null)
            {
                var names = string.Join(", ", entries.Take(8).Select(e => e.FullName));
                throw Refuse(path, $"is a zip archive with no data.pkl entry, so it is not a torch.save file (its entries: {(names.Length == 0 ? "none" : names)}).");
            }

            CheckDeclaredSizes(path, entries, fileLength);
            if (pickleEntry.Length > MaxPickleBytes)
            {
                throw Refuse(path,
                    $"is refused: its pickle '{pickleEntry.FullName}' declares {pickleEntry.Length} bytes, more than the {MaxPickleBytes >> 20} MiB a checkpoint's pickle may have (the tensors' data lives in separate entries; a pickle this large is malformed or hostile). Nothing was read.");
            }

            var pickle = ReadPickle(path, pickleEntry);
            new PickleScanner(path, pickleEntry.FullName, pickle, entries).Scan();
        }
    }

    private static void CheckDeclaredSizes(string path, IReadOnlyList<ZipArchiveEntry> entries, long fileLength)
    {
        long storedTotal = 0;
        long compressedTotal = 0;
        ZipArchiveEntry? largestCompressed = null;
        foreach (var entry in entries)
        {
            if (entry.CompressedLength < 0 || entry.Length < 0)
            {
                throw Refuse(path, $"is corrupt: entry '{entry.FullName}' declares a negative size.");
            }

            storedTotal += Math.Min(entry.CompressedLength, fileLength);
            if (entry.CompressedLength > fileLength || storedTotal > fileLength)
            {
                throw Refuse(path,
                    $"is truncated or forged: its entries declare more data ({(entry.CompressedLength > fileLength ? entry.CompressedLength : storedTotal)} bytes, up to '{entry.FullName}') than the {fileLength}-byte file holds.");
            }

            if (entry.Length == entry.CompressedLength)
            {
                continue;   // stored: its data is in the file
            }

            if (entry.Length > entry.CompressedLength * DeflateMaxRatio + 1024)
            {
                throw Refuse(path,
                    $"is refused as a zip bomb: entry '{entry.FullName}' declares {entry.Length} bytes from {entry.CompressedLength} compressed bytes, more than deflate can produce, so its directory is forged. Nothing was inflated.");
            }

            compressedTotal += entry.Length;
            if (largestCompressed is null || entry.Length > largestCompressed.Length)
            {
                largestCompressed = entry;
            }
        }

        var limit = Math.Max(CompressedBytesFloor, fileLength > long.MaxValue / MaxCompressionRatio ? long.MaxValue : fileLength * MaxCompressionRatio);
        if (compressedTotal > limit)
        {
            throw Refuse(path,
                $"is refused as a zip bomb: entry '{largestCompressed!.FullName}' declares {largestCompressed.Length} bytes compressed into {largestCompressed.CompressedLength} (compressed entries declare {compressedTotal} bytes in all, in a {fileLength}-byte file; at most {limit} are accepted). torch.save stores its entries uncompressed, so a real PyTorch checkpoint never needs this; nothing was inflated.");
        }
    }

    private static byte[] ReadPickle(string path, ZipArchiveEntry entry)
    {
        var bytes = new byte[entry.Length];   // at most MaxPickleBytes, and (checked above) consistent with the file
        try
        {
            using var data = entry.Open();
            var read = data.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
            if (read < bytes.Length)
            {
                throw Refuse(path, $"is truncated: its pickle '{entry.FullName}' holds {read} of the {bytes.Length} bytes its zip directory declares.");
            }
        }
        catch (Exception e) when (e is IOException or InvalidDataException && !IsOurs(e))
        {
            throw Refuse(path, $"is truncated or corrupt: its pickle '{entry.FullName}' cannot be read ({e.Message}).", e);
        }

        return bytes;
    }

    private static bool IsOurs(Exception e) => e.Data.Contains(typeof(UntrustedPyTorchFile));

    private static InvalidDataException Refuse(string path, string problem, Exception? inner = null)
    {
        var error = new InvalidDataException($"'{path}' {problem}", inner);
        error.Data[typeof(UntrustedPyTorchFile)] = true;
        return error;
    }
}
