using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using Hcsc.Models.Checkpoints;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

/// <summary>
/// Hostile and malformed <c>torch.save</c> files, crafted here byte by byte: the loader must refuse each one with an
/// <see cref="InvalidDataException"/> that names the file and the problem, before anything in it is unpickled.
/// </summary>
public sealed class PyTorchUntrustedFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hcsc-untrusted-").FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [Fact]
    public void A_hand_assembled_torch_save_file_loads_with_the_right_values()
    {
        var path = Path.Combine(_dir, "valid.pth");
        float[] weights = [1.5f, -2, 3.25f, 4, 5, 6];
        long[] counts = [7, -8];
        var pickle = TensorPickle(
            new TensorSpec("w", "FloatStorage", "0", 6, [2, 3], [3, 1]),
            new TensorSpec("n", "LongStorage", "1", 2, [2], [1]),
            new TensorSpec("scalar", "FloatStorage", "2", 1, [], []));
        WriteZip(path, ("archive/data.pkl", pickle), ("archive/data/0", Bytes(weights)), ("archive/data/1", Bytes(counts)), ("archive/data/2", Bytes([0.5f])), ("archive/version", "3\n"u8.ToArray()));

        using var scope = NewDisposeScope();
        var read = PyTorchStateDict.Read(path);
        read.Keys.Should().BeEquivalentTo(["w", "n", "scalar"]);
        read["w"].shape.Should().Equal(2, 3);
        read["w"].data<float>().ToArray().Should().Equal(weights);
        read["n"].data<long>().ToArray().Should().Equal(counts);
        read["scalar"].item<float>().Should().Be(0.5f);
    }

    [Fact]
    public void Files_written_by_PyTorchStateDict_Write_still_round_trip()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "written.pth");
        var original = new Dictionary<string, Tensor> { ["a"] = randn(3, 4), ["b"] = arange(5L), ["zeros"] = zeros(64, 64) };
        PyTorchStateDict.Write(path, original);
        var back = PyTorchStateDict.Read(path);
        foreach (var (name, tensor) in original)
        {
            back[name].allclose(tensor, rtol: 0, atol: 0).Should().BeTrue(name);
        }
    }

    [Fact]
    public void Os_system_is_refused_and_its_command_never_runs()
    {
        var marker = Path.Combine(_dir, "pwned");
        var evil = new PickleWriter().Global("os", "system").BinUnicode($"touch '{marker}'").Op(Tuple1).Op(Reduce);
        var path = WriteTensorFileWith("os_system.pth", evil);

        ShouldRefuse(path, "'os.system'", "may be malicious", "only tensor");
        File.Exists(marker).Should().BeFalse("the command in the pickle must never run");
    }

    public static TheoryData<string, string> DangerousCalls => new()
    {
        { "posix_system", "'posix.system'" },
        { "builtins_eval", "'builtins.eval'" },
        { "subprocess_popen_stack_global", "'subprocess.Popen'" },
        { "stack_global_from_the_memo", "'os.system'" },
        { "torch_load_itself", "'torch.load'" },
        { "storage_class_called", "torch.FloatStorage" },
    };

    [Theory]
    [MemberData(nameof(DangerousCalls))]
    public void Dangerous_globals_are_refused_however_they_are_spelled(string variant, string expected)
    {
        var marker = Path.Combine(_dir, "pwned-" + variant);
        var command = $"touch '{marker}'";
        var evil = new PickleWriter();
        switch (variant)
        {
            case "posix_system":
                evil.Global("posix", "system").BinUnicode(command).Op(Tuple1).Op(Reduce);
                break;
            case "builtins_eval":
                evil.Global("builtins", "eval").BinUnicode($"__import__('os').system(\"{command}\")").Op(Tuple1).Op(Reduce);
                break;
            case "subprocess_popen_stack_global":
                evil.ShortBinUnicode("subprocess").Op(Memoize).ShortBinUnicode("Popen").Op(Memoize).Op(StackGlobal)
                    .Op(EmptyList).BinUnicode("touch").Op(Append).BinUnicode(marker).Op(Append).Op(Tuple1).Op(Reduce);
                break;
            case "stack_global_from_the_memo":
                // The module and name are stored in the memo far from the STACK_GLOBAL that uses them.
                evil.BinUnicode("os").Op(BinPut, 200).Op(Pop).BinUnicode("system").Op(BinPut, 201).Op(Pop)
                    .Op(BinGet, 200).Op(BinGet, 201).Op(StackGlobal).BinUnicode(command).Op(Tuple1).Op(Reduce);
                break;
            case "torch_load_itself":
                evil.Global("torch", "load").BinUnicode("/etc/passwd").Op(Tuple1).Op(Reduce);
                break;
            case "storage_class_called":
                // An allowed global used for something torch.save never does: calling a storage class.
                evil.Global("torch", "FloatStorage").BinUnicode(command).Op(Tuple1).Op(Reduce);
                break;
        }

        var path = WriteTensorFileWith(variant + ".pth", evil);
        var message = ShouldRefuse(path, expected);
        if (variant != "storage_class_called")
        {
            message.Should().Contain("may be malicious").And.Contain("only tensor");
        }

        File.Exists(marker).Should().BeFalse();
    }

    public static TheoryData<string, string> RefusedOpcodes => new()
    {
        { "inst", "INST" },
        { "obj", "OBJ" },
        { "ext1", "EXT1" },
        { "persid", "PERSID" },
    };

    [Theory]
    [MemberData(nameof(RefusedOpcodes))]
    public void Opcodes_that_build_arbitrary_objects_are_refused(string variant, string opcode)
    {
        var evil = new PickleWriter();
        switch (variant)
        {
            case "inst":
                evil.Op(Mark).BinUnicode("echo hi").Raw((byte)'i').Raw(Encoding.ASCII.GetBytes("os\nsystem\n"));
                break;
            case "obj":
                evil.Op(Mark).Global("collections", "OrderedDict").Op(Obj);
                break;
            case "ext1":
                evil.Op(Ext1, 1).Op(EmptyTuple).Op(Reduce);
                break;
            case "persid":
                evil.Raw((byte)'P').Raw("0\n"u8.ToArray());
                break;
        }

        var path = WriteTensorFileWith(variant + ".pth", evil);
        ShouldRefuse(path, opcode);
    }

    [Fact]
    public void A_zip_bomb_is_refused_before_it_is_inflated()
    {
        const long declared = 2L << 30;   // 2 GiB of zeros, about 2 MB deflated
        var path = Path.Combine(_dir, "bomb.pth");
        var pickle = TensorPickle(new TensorSpec("w", "FloatStorage", "0", declared / 4, [declared / 4], [1]));
        using (var zip = new ZipArchive(File.Create(path), ZipArchiveMode.Create))
        {
            using (var pkl = zip.CreateEntry("archive/data.pkl", CompressionLevel.NoCompression).Open())
            {
                pkl.Write(pickle);
            }

            using var data = zip.CreateEntry("archive/data/0", CompressionLevel.Optimal).Open();
            var chunk = new byte[1 << 20];
            for (long written = 0; written < declared; written += chunk.Length)
            {
                data.Write(chunk);
            }
        }

        new FileInfo(path).Length.Should().BeLessThan(16 << 20);
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        var peakBefore = process.PeakWorkingSet64;

        var message = ShouldRefuse(path, "archive/data/0", "zip bomb", "2147483648");

        process.Refresh();
        (process.PeakWorkingSet64 - peakBefore).Should().BeLessThan(200L << 20, "nothing may be inflated or allocated from the declared size");
        message.Should().Contain("torch.save");
    }

    [Fact]
    public void A_huge_pickle_is_refused_without_reading_it()
    {
        var path = Path.Combine(_dir, "huge_pickle.pth");
        using (var zip = new ZipArchive(File.Create(path), ZipArchiveMode.Create))
        {
            using var pkl = zip.CreateEntry("archive/data.pkl", CompressionLevel.SmallestSize).Open();
            var chunk = new byte[1 << 20];
            chunk[0] = 0x80;
            chunk[1] = 2;
            pkl.Write(chunk);
            chunk[0] = chunk[1] = 0;
            for (var i = 0; i < 80; i++)
            {
                pkl.Write(chunk);
            }
        }

        ShouldRefuse(path, "archive/data.pkl", "84934656", "64 MiB");
    }

    [Fact]
    public void A_length_prefix_larger_than_the_pickle_is_refused_before_anything_is_allocated()
    {
        // BINBYTES8 declaring 4 GiB: an unpickler that trusts the prefix allocates it before noticing the pickle is short.
        var evil = new PickleWriter().Raw(0x8e).Raw(BitConverter.GetBytes(4L << 30)).Raw([1, 2, 3]);
        var path = WriteTensorFileWith("long_prefix.pth", evil);
        ShouldRefuse(path, "archive/data.pkl", "4294967296", "only");
    }

    [Fact]
    public void A_pickle_that_builds_millions_of_objects_is_refused()
    {
        // Each EMPTY_DICT + POP costs the file 2 bytes and an unpickler a whole Hashtable.
        var evil = new PickleWriter();
        for (var i = 0; i < 2_100_000; i++)
        {
            evil.Op(EmptyDict).Op(Pop);
        }

        var path = WriteTensorFileWith("many_objects.pth", evil.Op(EmptyDict));
        ShouldRefuse(path, "archive/data.pkl", "more than 2000000 values");
    }

    [Fact]
    public void A_tensor_larger_than_its_storage_is_refused()
    {
        var path = Path.Combine(_dir, "oversized.pth");
        var pickle = TensorPickle(new TensorSpec("w", "FloatStorage", "0", 4, [100_000, 100_000], [100_000, 1]));
        WriteZip(path, ("archive/data.pkl", pickle), ("archive/data/0", Bytes([1f, 2, 3, 4])));
        ShouldRefuse(path, "'w'", "100000, 100000", "40000000000", "16 bytes");

        // Strides and an offset that reach past the storage's end, with a shape that alone would fit.
        var strided = Path.Combine(_dir, "strided.pth");
        var stridedPickle = TensorPickle(new TensorSpec("v", "FloatStorage", "0", 4, [2, 2], [8, 1], Offset: 1));
        WriteZip(strided, ("archive/data.pkl", stridedPickle), ("archive/data/0", Bytes([1f, 2, 3, 4])));
        ShouldRefuse(strided, "'v'", "offset 1", "16 bytes");
    }

    [Fact]
    public void A_missing_storage_entry_is_named()
    {
        var path = Path.Combine(_dir, "orphan.pth");
        var pickle = TensorPickle(
            new TensorSpec("w", "FloatStorage", "0", 4, [4], [1]),
            new TensorSpec("b", "FloatStorage", "7", 4, [4], [1]));
        WriteZip(path, ("archive/data.pkl", pickle), ("archive/data/0", Bytes([1f, 2, 3, 4])));
        ShouldRefuse(path, "storage '7'", "data/7", "missing");
    }

    [Fact]
    public void A_truncated_file_is_named_as_truncated()
    {
        var valid = Path.Combine(_dir, "whole.pth");
        WriteZip(valid, ("archive/data.pkl", TensorPickle(new TensorSpec("w", "FloatStorage", "0", 64, [64], [1]))), ("archive/data/0", new byte[256]));
        var bytes = File.ReadAllBytes(valid);
        var path = Path.Combine(_dir, "cut.pth");
        File.WriteAllBytes(path, bytes[..(bytes.Length * 2 / 3)]);
        ShouldRefuse(path, "truncated");
    }

    [Fact]
    public void A_truncated_pickle_is_named_as_truncated()
    {
        var pickle = TensorPickle(new TensorSpec("w", "FloatStorage", "0", 4, [4], [1]));
        var path = Path.Combine(_dir, "short_pickle.pth");
        WriteZip(path, ("archive/data.pkl", pickle[..^3]), ("archive/data/0", Bytes([1f, 2, 3, 4])));
        ShouldRefuse(path, "archive/data.pkl", "ends");
    }

    [Fact]
    public void Non_zip_and_empty_files_are_named()
    {
        var text = Path.Combine(_dir, "notes.pth");
        File.WriteAllText(text, "these are not the weights you are looking for");
        ShouldRefuse(text, "not a zip archive", "PyTorch 1.6 or later");

        var empty = Path.Combine(_dir, "zero_bytes.pth");
        File.WriteAllBytes(empty, []);
        ShouldRefuse(empty, "empty");

        var noPickle = Path.Combine(_dir, "no_pickle.pth");
        WriteZip(noPickle, ("archive/data/0", Bytes([1f])));
        ShouldRefuse(noPickle, "no data.pkl");
    }

    // ---- helpers ----

    private static string ShouldRefuse(string path, params string[] fragments)
    {
        var act = () => PyTorchStateDict.Read(path);
        var message = act.Should().Throw<InvalidDataException>().Which.Message;
        message.Should().Contain(path);
        foreach (var fragment in fragments)
        {
            message.Should().Contain(fragment);
        }

        return message;
    }

    /// <summary>A valid one-tensor state dict plus an entry <c>'evil'</c> whose value <paramref name="evil"/> pushes.</summary>
    private string WriteTensorFileWith(string name, PickleWriter evil)
    {
        var pickle = new PickleWriter().Op(Proto, 2).Op(EmptyDict).Op(Mark);
        AppendTensor(pickle, new TensorSpec("w", "FloatStorage", "0", 4, [4], [1]));
        pickle.BinUnicode("evil").Raw(evil.ToArray()).Op(SetItems).Op(Stop);
        var path = Path.Combine(_dir, name);
        WriteZip(path, ("archive/data.pkl", pickle.ToArray()), ("archive/data/0", Bytes([1f, 2, 3, 4])));
        return path;
    }

    private sealed record TensorSpec(string Name, string Storage, string Key, long Numel, long[] Shape, long[] Stride, long Offset = 0);

    /// <summary>What torch.save (protocol 2) writes for a dict of tensors.</summary>
    private static byte[] TensorPickle(params TensorSpec[] tensors)
    {
        var p = new PickleWriter().Op(Proto, 2).Op(EmptyDict).Op(Mark);
        foreach (var t in tensors)
        {
            AppendTensor(p, t);
        }

        return p.Op(SetItems).Op(Stop).ToArray();
    }

    private static void AppendTensor(PickleWriter p, TensorSpec t)
    {
        p.BinUnicode(t.Name).Global("torch._utils", "_rebuild_tensor_v2").Op(Mark);
        p.Op(Mark).BinUnicode("storage").Global("torch", t.Storage).BinUnicode(t.Key).BinUnicode("cpu").Int(t.Numel).Op(Tuple).Op(BinPersId);
        p.Int(t.Offset).Op(Mark);
        foreach (var s in t.Shape)
        {
            p.Int(s);
        }

        p.Op(Tuple).Op(Mark);
        foreach (var s in t.Stride)
        {
            p.Int(s);
        }

        p.Op(Tuple).Op(NewFalse).Global("collections", "OrderedDict").Op(EmptyTuple).Op(Reduce).Op(Tuple).Op(Reduce);
    }

    private static void WriteZip(string path, params (string Name, byte[] Data)[] entries)
    {
        using var zip = new ZipArchive(File.Create(path), ZipArchiveMode.Create);
        foreach (var (name, data) in entries)
        {
            using var stream = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
            stream.Write(data);
        }
    }

    private static byte[] Bytes(float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (var i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        }

        return bytes;
    }

    private static byte[] Bytes(long[] values)
    {
        var bytes = new byte[values.Length * 8];
        for (var i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(i * 8), values[i]);
        }

        return bytes;
    }

    private const byte Mark = (byte)'(', Stop = (byte)'.', Tuple = (byte)'t', Tuple1 = 0x85, EmptyTuple = (byte)')', EmptyDict = (byte)'}',
        EmptyList = (byte)']', Append = (byte)'a', SetItems = (byte)'u', Reduce = (byte)'R', BinPersId = (byte)'Q', NewFalse = 0x89,
        Proto = 0x80, Memoize = 0x94, StackGlobal = 0x93, BinPut = (byte)'q', BinGet = (byte)'h', Pop = (byte)'0', Obj = (byte)'o', Ext1 = 0x82;

    /// <summary>Hand-assembles pickle opcodes.</summary>
    private sealed class PickleWriter
    {
        private readonly MemoryStream _bytes = new();

        public PickleWriter Op(byte opcode)
        {
            _bytes.WriteByte(opcode);
            return this;
        }

        public PickleWriter Op(byte opcode, byte argument) => Op(opcode).Raw(argument);

        public PickleWriter Raw(params byte[] bytes)
        {
            _bytes.Write(bytes);
            return this;
        }

        public PickleWriter Global(string module, string name) => Op((byte)'c').Raw(Encoding.UTF8.GetBytes($"{module}\n{name}\n"));

        public PickleWriter BinUnicode(string text)
        {
            var utf8 = Encoding.UTF8.GetBytes(text);
            return Op((byte)'X').Raw(BitConverter.GetBytes(utf8.Length)).Raw(utf8);
        }

        public PickleWriter ShortBinUnicode(string text)
        {
            var utf8 = Encoding.UTF8.GetBytes(text);
            return Op(0x8c, (byte)utf8.Length).Raw(utf8);
        }

        public PickleWriter Int(long value) => value is >= int.MinValue and <= int.MaxValue
            ? Op((byte)'J').Raw(BitConverter.GetBytes((int)value))
            : Op(0x8a, 8).Raw(BitConverter.GetBytes(value));

        public byte[] ToArray() => _bytes.ToArray();
    }
}
