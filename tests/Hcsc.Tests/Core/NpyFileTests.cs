using System.Text;
using Hcsc.Core.IO;
using static TorchSharp.torch;

namespace Hcsc.Tests.Core;

public sealed class NpyFileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hcsc-npy-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Float32_and_int64_round_trip_with_a_numpy_header()
    {
        string path = Path.Combine(_directory, "x.npy");
        using var x = tensor(new float[,] { { 1.5f, -2f, 3f }, { 4f, 5f, 6.25f } });
        NpyFile.Write(path, x);

        var bytes = File.ReadAllBytes(path);
        bytes[..6].Should().Equal(0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y');
        int headerLength = bytes[8] | (bytes[9] << 8);
        ((10 + headerLength) % 64).Should().Be(0, "numpy aligns the data to 64 bytes");
        Encoding.ASCII.GetString(bytes, 10, headerLength).Should().Be("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".PadRight(headerLength - 1) + "\n");
        BitConverter.ToSingle(bytes, 10 + headerLength).Should().Be(1.5f);

        using var back = NpyFile.ReadFloat32(path);
        back.shape.Should().Equal(2L, 3L);
        back.data<float>().ToArray().Should().Equal(1.5f, -2f, 3f, 4f, 5f, 6.25f);

        string ints = Path.Combine(_directory, "a.npy");
        NpyFile.Write(ints, tensor(new long[] { 7, -1, 3 }));
        Encoding.ASCII.GetString(File.ReadAllBytes(ints)).Should().Contain("'descr': '<i8'").And.Contain("'shape': (3,)");
    }

    [Theory]
    [InlineData("<f2")]
    [InlineData("<f8")]
    [InlineData("<f4")]
    public void Float16_and_float64_files_are_read_as_float32(string descr)
    {
        float[] values = [0.5f, -1.25f, 2f, 1024f];
        byte[] data = descr switch
        {
            "<f2" => values.SelectMany(v => BitConverter.GetBytes((Half)v)).ToArray(),
            "<f8" => values.SelectMany(v => BitConverter.GetBytes((double)v)).ToArray(),
            _ => values.SelectMany(BitConverter.GetBytes).ToArray(),
        };
        string path = WriteRaw("h.npy", $"{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2), }}", data);
        using var x = NpyFile.ReadFloat32(path);
        x.dtype.Should().Be(ScalarType.Float32);
        x.shape.Should().Equal(2L, 2L);
        x.data<float>().ToArray().Should().Equal(values);
    }

    [Fact]
    public void Invalid_files_give_clear_errors()
    {
        string notNpy = Path.Combine(_directory, "text.npy");
        File.WriteAllText(notNpy, "hello world, not numpy");
        FluentActions.Invoking(() => NpyFile.ReadFloat32(notNpy)).Should().Throw<InvalidDataException>().WithMessage("*not a .npy file*");

        string ints = WriteRaw("i.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", new byte[8]);
        FluentActions.Invoking(() => NpyFile.ReadFloat32(ints)).Should().Throw<InvalidDataException>().WithMessage("*'<i4'*float16*float32*float64*");

        string fortran = WriteRaw("f.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", new byte[16]);
        FluentActions.Invoking(() => NpyFile.ReadFloat32(fortran)).Should().Throw<InvalidDataException>().WithMessage("*Fortran*");

        string big = WriteRaw("b.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", new byte[16]);
        FluentActions.Invoking(() => NpyFile.ReadFloat32(big)).Should().Throw<InvalidDataException>().WithMessage("*big-endian*");

        string truncated = WriteRaw("t.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", new byte[16]);
        FluentActions.Invoking(() => NpyFile.ReadFloat32(truncated)).Should().Throw<InvalidDataException>().WithMessage("*truncated*");

        FluentActions.Invoking(() => NpyFile.ReadFloat32(Path.Combine(_directory, "missing.npy"))).Should().Throw<FileNotFoundException>();
        FluentActions.Invoking(() => NpyFile.Write(Path.Combine(_directory, "d.npy"), zeros(2, ScalarType.Float64))).Should().Throw<ArgumentException>().WithMessage("*float32 and int64*");
    }

    private string WriteRaw(string name, string dict, byte[] data)
    {
        int padding = (64 - ((10 + dict.Length + 1) % 64)) % 64;
        string header = dict + new string(' ', padding) + "\n";
        string path = Path.Combine(_directory, name);
        using var stream = File.Create(path);
        stream.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, (byte)(header.Length & 0xff), (byte)(header.Length >> 8)]);
        stream.Write(Encoding.ASCII.GetBytes(header));
        stream.Write(data);
        return path;
    }
}
