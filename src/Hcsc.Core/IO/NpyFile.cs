using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Core.IO;

/// <summary>
/// Reads and writes NumPy <c>.npy</c> files (format versions 1.0, 2.0 and 3.0), so tensors move
/// between .NET and Python with numpy alone.
/// <list type="bullet">
/// <item><see cref="ReadFloat32"/> reads little-endian float16 (<c>&lt;f2</c>), float32 (<c>&lt;f4</c>) or
/// float64 (<c>&lt;f8</c>) arrays in C order and returns a float32 CPU tensor of the file's shape.</item>
/// <item><see cref="Write"/> writes a float32 or int64 tensor as a version 1.0 file in C order
/// (<c>&lt;f4</c> / <c>&lt;i8</c>), which <c>numpy.load</c> reads.</item>
/// </list>
/// </summary>
public static partial class NpyFile
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>
    /// Reads a <c>.npy</c> file of float16, float32 or float64 values in C order into a float32 CPU
    /// tensor with the file's shape. The header is validated (magic, version, dtype, byte order,
    /// order, shape) and the file size is checked against the shape before any data is read.
    /// </summary>
    /// <param name="path">The file to read.</param>
    /// <returns>A new float32 tensor on the CPU, shape as stored (e.g. <c>[N, d]</c>).</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid .npy file of a supported dtype; the message says what is wrong.</exception>
    public static Tensor ReadFloat32(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The .npy file '{path}' does not exist.", path);
        }

        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        var header = ReadHeader(stream, path);
        int itemSize = header.Descr switch
        {
            "f2" => 2,
            "f4" => 4,
            "f8" => 8,
            _ => throw new InvalidDataException(
                $"'{path}' holds dtype '{header.RawDescr}'; only float16 ('<f2'), float32 ('<f4') and float64 ('<f8') are supported. " +
                "Convert it with numpy, e.g. np.save(path, x.astype('float32'))."),
        };

        long count = 1;
        foreach (long dim in header.Shape)
        {
            count = checked(count * dim);
        }

        long expected = checked(header.DataOffset + (count * itemSize));
        if (stream.Length != expected)
        {
            throw new InvalidDataException(
                $"'{path}' is {stream.Length} bytes but its header (shape ({string.Join(", ", header.Shape)}), dtype '{header.RawDescr}') " +
                $"implies {expected} bytes; the file is truncated or corrupt.");
        }

        if (count > Array.MaxLength)
        {
            throw new InvalidDataException($"'{path}' holds {count} values, more than one array can hold ({Array.MaxLength}).");
        }

        var values = new float[count];
        ReadValues(stream, values, itemSize);
        return torch.tensor(values, header.Shape, ScalarType.Float32);
    }

    /// <summary>
    /// Writes <paramref name="tensor"/> (float32 or int64, any device, any shape) to
    /// <paramref name="path"/> as a version 1.0 <c>.npy</c> file in C order, little-endian.
    /// </summary>
    /// <exception cref="ArgumentException">The tensor's dtype is neither float32 nor int64.</exception>
    public static void Write(string path, Tensor tensor)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensor);
        string descr = tensor.dtype switch
        {
            ScalarType.Float32 => "<f4",
            ScalarType.Int64 => "<i8",
            _ => throw new ArgumentException($"Only float32 and int64 tensors can be written; got {Tensors.TensorDescription.Describe(tensor)}.", nameof(tensor)),
        };

        using var cpu = tensor.detach().cpu().contiguous();
        string shape = cpu.shape.Length switch
        {
            0 => "()",
            1 => $"({cpu.shape[0]},)",
            _ => "(" + string.Join(", ", cpu.shape) + ")",
        };
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        int unpadded = Magic.Length + 2 + 2 + dict.Length + 1;
        int padding = (64 - (unpadded % 64)) % 64;
        string headerText = dict + new string(' ', padding) + "\n";

        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        stream.Write(Magic);
        stream.WriteByte(1);
        stream.WriteByte(0);
        Span<byte> length = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(length, checked((ushort)headerText.Length));
        stream.Write(length);
        stream.Write(Encoding.ASCII.GetBytes(headerText));
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Writing .npy files is implemented for little-endian hosts only.");
        }

        if (cpu.numel() == 0)
        {
            return;
        }

        if (cpu.dtype == ScalarType.Float32)
        {
            stream.Write(MemoryMarshal.AsBytes(cpu.data<float>().ToArray().AsSpan()));
        }
        else
        {
            stream.Write(MemoryMarshal.AsBytes(cpu.data<long>().ToArray().AsSpan()));
        }
    }

    private static void ReadValues(Stream stream, float[] values, int itemSize)
    {
        const int ChunkValues = 1 << 18;
        var buffer = new byte[ChunkValues * itemSize];
        long done = 0;
        while (done < values.Length)
        {
            int take = (int)Math.Min(ChunkValues, values.Length - done);
            stream.ReadExactly(buffer, 0, take * itemSize);
            var target = values.AsSpan((int)done, take);
            var source = buffer.AsSpan(0, take * itemSize);
            switch (itemSize)
            {
                case 2:
                    var halves = MemoryMarshal.Cast<byte, Half>(source);
                    for (int i = 0; i < take; i++)
                    {
                        target[i] = (float)halves[i];
                    }

                    break;
                case 4:
                    MemoryMarshal.Cast<byte, float>(source).CopyTo(target);
                    break;
                default:
                    var doubles = MemoryMarshal.Cast<byte, double>(source);
                    for (int i = 0; i < take; i++)
                    {
                        target[i] = (float)doubles[i];
                    }

                    break;
            }

            done += take;
        }
    }

    private static NpyHeader ReadHeader(Stream stream, string path)
    {
        Span<byte> prefix = stackalloc byte[8];
        if (stream.Length < 10 || stream.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8 || !prefix[..6].SequenceEqual(Magic))
        {
            throw new InvalidDataException($"'{path}' is not a .npy file: it does not start with the magic string \\x93NUMPY.");
        }

        byte major = prefix[6];
        int lengthBytes = major switch
        {
            1 => 2,
            2 or 3 => 4,
            _ => throw new InvalidDataException($"'{path}' has .npy format version {major}.{prefix[7]}; versions 1.0, 2.0 and 3.0 are supported."),
        };
        Span<byte> lengthSpan = stackalloc byte[4];
        stream.ReadExactly(lengthSpan[..lengthBytes]);
        long headerLength = lengthBytes == 2 ? BinaryPrimitives.ReadUInt16LittleEndian(lengthSpan) : BinaryPrimitives.ReadUInt32LittleEndian(lengthSpan);
        long dataOffset = 8 + lengthBytes + headerLength;
        if (dataOffset > stream.Length || headerLength > 1 << 20)
        {
            throw new InvalidDataException($"'{path}' declares a header of {headerLength} bytes, longer than the file; it is truncated or corrupt.");
        }

        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        string text = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(headerBytes).Trim();

        var descrMatch = DescrPattern().Match(text);
        var orderMatch = FortranPattern().Match(text);
        var shapeMatch = ShapePattern().Match(text);
        if (!descrMatch.Success || !orderMatch.Success || !shapeMatch.Success)
        {
            throw new InvalidDataException($"'{path}' has a malformed .npy header (expected 'descr', 'fortran_order' and 'shape'): {text}");
        }

        if (orderMatch.Groups[1].Value == "True")
        {
            throw new InvalidDataException($"'{path}' is stored in Fortran (column-major) order; save it in C order, e.g. np.save(path, np.ascontiguousarray(x)).");
        }

        string rawDescr = descrMatch.Groups[1].Value;
        string byteOrder = rawDescr.Length > 0 ? rawDescr[..1] : string.Empty;
        if (byteOrder == ">" && rawDescr != ">f1")
        {
            throw new InvalidDataException($"'{path}' is big-endian (dtype '{rawDescr}'); convert it with x.astype(x.dtype.newbyteorder('<')).");
        }

        string descr = byteOrder is "<" or "|" or "=" ? rawDescr[1..] : rawDescr;
        var shape = new List<long>();
        foreach (string part in shapeMatch.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            string digits = part.TrimEnd('L');
            if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long dim))
            {
                throw new InvalidDataException($"'{path}' has a malformed shape in its header: ({shapeMatch.Groups[1].Value}).");
            }

            shape.Add(dim);
        }

        return new NpyHeader(descr, rawDescr, shape.ToArray(), dataOffset);
    }

    [GeneratedRegex(@"['""]descr['""]\s*:\s*['""]([^'""]*)['""]")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"['""]fortran_order['""]\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"['""]shape['""]\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();

    private sealed record NpyHeader(string Descr, string RawDescr, long[] Shape, long DataOffset);
}
