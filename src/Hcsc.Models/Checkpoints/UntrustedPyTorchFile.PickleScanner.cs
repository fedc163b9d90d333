using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Numerics;
using System.Text;

namespace Hcsc.Models.Checkpoints;

/// <summary>The pickle opcode walk of <see cref="UntrustedPyTorchFile"/> and the abstract values it tracks.</summary>
public static partial class UntrustedPyTorchFile
{
    /// <summary>
    /// Walks a pickle's opcodes over an abstract stack and memo (strings, integers, tuples, globals, storage references and
    /// tensors are tracked; everything else is an opaque value). Nothing is constructed and nothing is allocated from a
    /// length the pickle declares before that length is checked against the bytes that remain.
    /// </summary>
    private sealed class PickleScanner(string path, string entryName, byte[] pickle, IReadOnlyList<ZipArchiveEntry> entries)
    {
        private readonly List<Value> _stack = [];
        private readonly Stack<int> _marks = new();
        private readonly Dictionary<long, Value> _memo = [];
        private readonly HashSet<ZipArchiveEntry> _storages = [];
        private Dictionary<string, ZipArchiveEntry>? _entryByKey;

        /// <summary>Each entry under the text after the last <c>data/</c> in its name; the first entry wins, as in a linear search.</summary>
        private Dictionary<string, ZipArchiveEntry> EntryByKey
        {
            get
            {
                if (_entryByKey is null)
                {
                    _entryByKey = new Dictionary<string, ZipArchiveEntry>(StringComparer.Ordinal);
                    foreach (var e in entries)
                    {
                        var at = e.FullName.LastIndexOf("data/", StringComparison.Ordinal);
                        if (at >= 0)
                        {
                            _entryByKey.TryAdd(e.FullName[(at + "data/".Length)..], e);
                        }
                    }
                }

                return _entryByKey;
            }
        }
        private BigInteger _tensorBytes;
        private long _pushed;
        private int _pos;
        private int _opAt;

        public void Scan()
        {
            while (true)
            {
                if (_pos >= pickle.Length)
                {
                    throw Refuse(path, $"is truncated: its pickle '{entryName}' ends at byte {pickle.Length} before its STOP opcode.");
                }

                _opAt = _pos;
                var op = pickle[_pos++];
                switch (op)
                {
                    case 0x80: // PROTO
                        var protocol = Byte();
                        if (protocol > 5)
                        {
                            throw Malformed($"declares pickle protocol {protocol}; protocols 0 to 5 exist");
                        }

                        break;
                    case 0x95: // FRAME: frames are transparent to the opcode stream
                        Take(8);
                        break;
                    case (byte)'.': // STOP
                        CheckTensorTotal();
                        return;

                    // Marks and stack manipulation
                    case (byte)'(': _marks.Push(_stack.Count); break;
                    case (byte)'0': // POP
                        if (_stack.Count > (_marks.Count > 0 ? _marks.Peek() : 0))
                        {
                            _stack.RemoveAt(_stack.Count - 1);
                        }
                        else
                        {
                            PopMark();
                        }

                        break;
                    case (byte)'1': PopMark(); break; // POP_MARK
                    case (byte)'2': Push(Peek()); break; // DUP

                    // Scalars
                    case (byte)'N': case 0x88: case 0x89: Push(Opaque.Instance); break; // NONE, NEWTRUE, NEWFALSE
                    case (byte)'J': Push(new Int(BinaryPrimitives.ReadInt32LittleEndian(Take(4)))); break; // BININT
                    case (byte)'K': Push(new Int(Byte())); break; // BININT1
                    case (byte)'M': Push(new Int(BinaryPrimitives.ReadUInt16LittleEndian(Take(2)))); break; // BININT2
                    case 0x8a: Push(LittleEndianInt(Take(Byte()))); break; // LONG1
                    case 0x8b: Push(LittleEndianInt(Take(Length(BinaryPrimitives.ReadInt32LittleEndian(Take(4)), "LONG4")))); break;
                    case (byte)'I': case (byte)'L': Push(TextInt(Line())); break; // INT, LONG
                    case (byte)'F': Line(); Push(Opaque.Instance); break; // FLOAT
                    case (byte)'G': Take(8); Push(Opaque.Instance); break; // BINFLOAT

                    // Strings and bytes
                    case (byte)'S': Push(new Str(Encoding.Latin1.GetString(Line()))); break; // STRING
                    case (byte)'V': Push(new Str(Encoding.Latin1.GetString(Line()))); break; // UNICODE (escapes left as they are)
                    case (byte)'T': Push(new Str(Encoding.Latin1.GetString(Take(Length(BinaryPrimitives.ReadInt32LittleEndian(Take(4)), "BINSTRING"))))); break;
                    case (byte)'U': Push(new Str(Encoding.Latin1.GetString(Take(Byte())))); break; // SHORT_BINSTRING
                    case (byte)'X': Push(new Str(Utf8(Take(Length(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)), "BINUNICODE"))))); break;
                    case 0x8c: Push(new Str(Utf8(Take(Byte())))); break; // SHORT_BINUNICODE
                    case 0x8d: Push(new Str(Utf8(Take(Length(BinaryPrimitives.ReadUInt64LittleEndian(Take(8)), "BINUNICODE8"))))); break;
                    case (byte)'B': Take(Length(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)), "BINBYTES")); Push(Opaque.Instance); break;
                    case (byte)'C': Take(Byte()); Push(Opaque.Instance); break; // SHORT_BINBYTES
                    case 0x8e: Take(Length(BinaryPrimitives.ReadUInt64LittleEndian(Take(8)), "BINBYTES8")); Push(Opaque.Instance); break;
                    case 0x96: Take(Length(BinaryPrimitives.ReadUInt64LittleEndian(Take(8)), "BYTEARRAY8")); Push(Opaque.Instance); break;

                    // Containers
                    case (byte)')': Push(new Tuple([])); break; // EMPTY_TUPLE
                    case (byte)'t': Push(new Tuple(PopMark())); break; // TUPLE
                    case 0x85: Push(new Tuple(Pop(1))); break; // TUPLE1
                    case 0x86: Push(new Tuple(Pop(2))); break; // TUPLE2
                    case 0x87: Push(new Tuple(Pop(3))); break; // TUPLE3
                    case (byte)']': case (byte)'}': case 0x8f: Push(Opaque.Instance); break; // EMPTY_LIST, EMPTY_DICT, EMPTY_SET
                    case (byte)'l': case (byte)'d': case 0x91: PopMark(); Push(Opaque.Instance); break; // LIST, DICT, FROZENSET
                    case (byte)'a': PopOne(); Peek(); break; // APPEND
                    case (byte)'s': PopOne(); PopOne(); Peek(); break; // SETITEM
                    case (byte)'e': case (byte)'u': case 0x90: PopMark(); Peek(); break; // APPENDS, SETITEMS, ADDITEMS

                    // Memo
                    case (byte)'p': _memo[MemoIndex(TextInt(Line()))] = Peek(); break; // PUT
                    case (byte)'q': _memo[Byte()] = Peek(); break; // BINPUT
                    case (byte)'r': _memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(4))] = Peek(); break; // LONG_BINPUT
                    case 0x94: _memo[_memo.Count] = Peek(); break; // MEMOIZE
                    case (byte)'g': Push(Recall(MemoIndex(TextInt(Line())))); break; // GET
                    case (byte)'h': Push(Recall(Byte())); break; // BINGET
                    case (byte)'j': Push(Recall(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // LONG_BINGET

                    // Globals and calls
                    case (byte)'c': // GLOBAL
                        var module = Utf8(Line());
                        Push(Import(module, Utf8(Line())));
                        break;
                    case 0x93: // STACK_GLOBAL
                        var popped = Pop(2);
                        if (popped[0] is not Str m || popped[1] is not Str n)
                        {
                            throw Hostile("imports a global (STACK_GLOBAL) whose module and name are not strings");
                        }

                        Push(Import(m.Text, n.Text));
                        break;
                    case (byte)'R': // REDUCE
                        var args = PopOne();
                        Push(Call(PopOne(), args, "REDUCE"));
                        break;
                    case 0x81: // NEWOBJ
                        var newArgs = PopOne();
                        Push(Call(PopOne(), newArgs, "NEWOBJ"));
                        break;
                    case (byte)'b': // BUILD
                        PopOne();
                        if (Peek() is Global built)
                        {
                            throw Hostile($"sets the state of '{built.Name}' itself (BUILD), which torch.save never does");
                        }

                        break;
                    case (byte)'Q': // BINPERSID
                        Push(StorageReference(PopOne()));
                        break;

                    case (byte)'i': // INST
                        var instModule = Utf8(Line());
                        throw Hostile($"uses the pickle opcode INST to build an object of '{instModule}.{Utf8(Line())}', which torch.save never writes");
                    case (byte)'o': throw Hostile("uses the pickle opcode OBJ (builds an arbitrary object), which torch.save never writes");
                    case 0x92: throw Hostile("uses the pickle opcode NEWOBJ_EX, which torch.save never writes");
                    case 0x82: case 0x83: case 0x84:
                        throw Hostile($"uses the pickle opcode EXT{(op == 0x82 ? 1 : op == 0x83 ? 2 : 4)} (imports a global through the copyreg extension registry), which torch.save never writes");
                    case (byte)'P': throw Hostile("uses the pickle opcode PERSID (a text persistent id), which torch.save never writes");
                    case 0x97: case 0x98: throw Hostile("uses out-of-band pickle buffers (NEXT_BUFFER / READONLY_BUFFER), which torch.save never writes");
                    default:
                        throw Malformed($"has the byte 0x{op:x2} where an opcode should be; it is not a pickle opcode");
                }
            }
        }

        private Value Import(string module, string name)
        {
            var full = module + "." + name;
            if (!AllowedGlobals.Contains(full))
            {
                throw Hostile($"imports '{full}', which a tensor checkpoint never needs");
            }

            return new Global(full);
        }

        private Value Call(Value callable, Value args, string opcode)
        {
            if (callable is not Global global)
            {
                throw Hostile($"calls ({opcode}) something that is not an imported global");
            }

            switch (global.Name)
            {
                case OrderedDict:
                    return Opaque.Instance;
                case RebuildTensor when opcode == "REDUCE":
                    return RebuildTensorFrom(args);
                case RebuildParameter when opcode == "REDUCE" && args is Tuple { Items: [Tensor, ..] }:
                    return new Tensor();
                default:
                    throw Hostile($"calls '{global.Name}' ({opcode}) in a way torch.save never does");
            }
        }

        private Value StorageReference(Value pid)
        {
            if (pid is not Tuple { Items: [Str { Text: "storage" }, Global storageType, Str key, ..] items})
            {
                throw Hostile("has a persistent id that is not a torch.save storage reference ('storage', storage type, key, location, size)");
            }

            if (!storageType.Name.StartsWith("torch.", StringComparison.Ordinal) || !StorageTypes.TryGetValue(storageType.Name["torch.".Length..], out var type))
            {
                throw Hostile($"names '{storageType.Name}' as a storage type");
            }

            // The lookup TorchSharp.PyBridge makes (the first entry ending with data/KEY), compared ordinally: its own
            // culture-sensitive comparison costs as much as the whole check on a ResNet checkpoint. Should the two ever
            // disagree on a forged name, memory stays bounded all the same: the tensor it allocates is the shape checked
            // here against this entry, and it reads no more than that from whichever entry it opens.
            // For a key without "data/" in it, "ends with data/KEY" means "KEY follows the name's last data/": one index.
            ZipArchiveEntry? entry;
            if (!key.Text.Contains("data/", StringComparison.Ordinal))
            {
                EntryByKey.TryGetValue(key.Text, out entry);
            }
            else
            {
                var suffix = $"data/{key.Text}";
                entry = entries.FirstOrDefault(e => e.FullName.EndsWith(suffix, StringComparison.Ordinal));
            }

            if (entry is null)
            {
                throw Refuse(path,
                    $"is incomplete: its pickle refers to storage '{key.Text}' ({storageType.Name}), but the archive has no entry data/{key.Text} (the storage entry is missing). The file was truncated or assembled wrongly; re-save it with torch.save.");
            }

            if (items.Length > 4 && items[4] is Int { Value: { } declared } && declared * type.Size > entry.Length)
            {
                throw Refuse(path,
                    $"is truncated or corrupt: storage '{key.Text}' declares {declared} {type.DType} elements ({declared * type.Size} bytes), but its entry '{entry.FullName}' holds {entry.Length} bytes.");
            }

            return new Storage(key.Text, entry, type.Size, type.DType, storageType.Name);
        }

        private Tensor RebuildTensorFrom(Value args)
        {
            if (args is not Tuple { Items: [Storage storage, Int { Value: { } offset }, Tuple shape, Tuple stride, _, ..] })
            {
                throw Hostile("calls 'torch._utils._rebuild_tensor_v2' with arguments torch.save never writes (storage, offset, shape, stride, requires_grad, hooks)");
            }

            // The dict key the tensor is stored under (what torch.save pushes just before it), for messages only.
            var keyValue = _stack.Count > 0 ? _stack[^1] : null;
            string Name() => keyValue is Str key ? $"'{key.Text}'" : "(in a list or tuple)";
            var sizes = Integers(shape, Name, "shape");
            var strides = Integers(stride, Name, "stride");
            string Described() =>
                $"the tensor {Name()} (shape [{string.Join(", ", sizes)}], stride [{string.Join(", ", strides)}], offset {offset}, {storage.DType})";

            var impossible = sizes.Length != strides.Length || sizes.Length > MaxTensorDimensions || offset < 0;
            for (var i = 0; !impossible && i < sizes.Length; i++)
            {
                impossible = sizes[i] < 0 || strides[i] < 0;
            }

            if (impossible)
            {
                throw Refuse(path, $"is corrupt: {Described()} has an impossible layout (negative sizes, strides or offset, mismatched ranks, or more than {MaxTensorDimensions} dimensions).");
            }

            // Every element the layout reaches must lie inside the storage; TorchSharp.PyBridge also allocates the full
            // shape and fills it from the storage entry's start, so the element count must fit as well.
            BigInteger elements = 1;
            BigInteger last = offset;
            for (var i = 0; i < sizes.Length; i++)
            {
                elements *= sizes[i];
                last += (BigInteger)(sizes[i] - 1) * strides[i];
            }

            var needed = elements.IsZero ? BigInteger.Zero : BigInteger.Max(elements, last + 1) * storage.ElementSize;
            if (needed > storage.Entry.Length)
            {
                throw Refuse(path,
                    $"is refused: {Described()} needs {needed} bytes, but its storage '{storage.Key}' (entry '{storage.Entry.FullName}') holds {storage.Entry.Length} bytes. The file is corrupt or crafted to make the loader allocate or read out of bounds; nothing was allocated.");
            }

            _storages.Add(storage.Entry);
            _tensorBytes += elements * storage.ElementSize;
            return new Tensor();
        }

        private long[] Integers(Tuple tuple, Func<string> name, string what)
        {
            var values = new long[tuple.Items.Length];
            for (var i = 0; i < values.Length; i++)
            {
                if (tuple.Items[i] is not Int { Value: { } v })
                {
                    throw Refuse(path, $"is corrupt: the {what} of the tensor {name()} holds something other than an integer in range.");
                }

                values[i] = v;
            }

            return values;
        }

        private void CheckTensorTotal()
        {
            BigInteger storageBytes = 0;
            foreach (var entry in _storages)
            {
                storageBytes += entry.Length;
            }

            if (_tensorBytes > 2 * storageBytes + (64 << 10))
            {
                throw Refuse(path,
                    $"is refused: its pickle rebuilds {_tensorBytes} bytes of tensors from {storageBytes} bytes of storage, rebuilding the same storages over and over (a pickle bomb). Nothing was allocated.");
            }
        }

        // ---- reading ----

        private byte Byte() => Take(1)[0];

        private ReadOnlySpan<byte> Take(int count)
        {
            if (count > pickle.Length - _pos)
            {
                throw Refuse(path,
                    $"is truncated or forged: the opcode at byte {_opAt} of its pickle '{entryName}' needs {count} more bytes, but only {pickle.Length - _pos} remain.");
            }

            var span = pickle.AsSpan(_pos, count);
            _pos += count;
            return span;
        }

        private int Length(ulong declared, string opcode)
        {
            if (declared > (ulong)(pickle.Length - _pos))
            {
                throw Refuse(path,
                    $"is truncated or forged: the {opcode} at byte {_opAt} of its pickle '{entryName}' declares {declared} bytes, but only {pickle.Length - _pos} remain. Nothing was allocated.");
            }

            return (int)declared;
        }

        private int Length(int declared, string opcode) =>
            declared < 0 ? throw Malformed($"has a {opcode} with a negative length ({declared})") : Length((ulong)declared, opcode);

        private ReadOnlySpan<byte> Line()
        {
            var end = Array.IndexOf(pickle, (byte)'\n', _pos);
            if (end < 0)
            {
                throw Refuse(path, $"is truncated: its pickle '{entryName}' ends inside the text argument of the opcode at byte {_opAt}.");
            }

            var line = pickle.AsSpan(_pos, end - _pos);
            _pos = end + 1;
            return line;
        }

        private static string Utf8(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);

        private static Value LittleEndianInt(ReadOnlySpan<byte> bytes) =>
            bytes.Length <= 8 ? new Int(bytes.Length == 0 ? 0 : (long)new BigInteger(bytes, isUnsigned: false, isBigEndian: false)) : new Int(null);

        private static Int TextInt(ReadOnlySpan<byte> line)
        {
            var text = Encoding.ASCII.GetString(line).TrimEnd('L');
            return new Int(long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : null);
        }

        private long MemoIndex(Int index) => index.Value ?? throw Malformed("has a memo index that is not an integer");

        private Value Recall(long index) =>
            _memo.TryGetValue(index, out var value) ? value : throw Malformed($"reads memo slot {index}, which was never written");

        // ---- the abstract stack ----

        private void Push(Value value)
        {
            if (++_pushed > MaxPickleValues)
            {
                throw Refuse(path,
                    $"is refused: its pickle '{entryName}' builds more than {MaxPickleValues} values (at byte {_opAt}), far more than a checkpoint needs; unpickling it would take memory out of proportion to the file. Nothing was loaded.");
            }

            _stack.Add(value);
        }

        private Value Peek()
        {
            var floor = _marks.Count > 0 ? _marks.Peek() : 0;
            return _stack.Count > floor ? _stack[^1] : throw Malformed("pops an empty stack");
        }

        private Value PopOne()
        {
            var top = Peek();
            _stack.RemoveAt(_stack.Count - 1);
            return top;
        }

        private Value[] Pop(int count)
        {
            var floor = _marks.Count > 0 ? _marks.Peek() : 0;
            if (_stack.Count - floor < count)
            {
                throw Malformed("pops an empty stack");
            }

            var items = new Value[count];
            _stack.CopyTo(_stack.Count - count, items, 0, count);
            _stack.RemoveRange(_stack.Count - count, count);
            return items;
        }

        private Value[] PopMark()
        {
            if (_marks.Count == 0)
            {
                throw Malformed("closes a MARK that was never opened");
            }

            var start = _marks.Pop();
            var items = new Value[_stack.Count - start];
            _stack.CopyTo(start, items, 0, items.Length);
            _stack.RemoveRange(start, _stack.Count - start);
            return items;
        }

        private InvalidDataException Malformed(string problem) =>
            Refuse(path, $"is corrupt: its pickle '{entryName}' {problem} (at byte {_opAt}).");

        private InvalidDataException Hostile(string problem) =>
            Refuse(path,
                $"is refused: its pickle '{entryName}' {problem} (at byte {_opAt}). The file may be malicious: only tensor checkpoints are accepted (state dicts and training checkpoints holding tensors, numbers, strings, lists and dicts, what torch.load(weights_only=True) accepts). Nothing in it was run or loaded.");
    }

    private abstract record Value;

    private sealed record Opaque : Value
    {
        public static readonly Opaque Instance = new();
    }

    private sealed record Int(long? Value) : Value;

    private sealed record Str(string Text) : Value;

    private sealed record Tuple(Value[] Items) : Value;

    private sealed record Global(string Name) : Value;

    private sealed record Storage(string Key, ZipArchiveEntry Entry, int ElementSize, string DType, string TypeName) : Value;

    private sealed record Tensor : Value;
}
