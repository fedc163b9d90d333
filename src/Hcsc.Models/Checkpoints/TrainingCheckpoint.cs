using System.Text;
using Hcsc.Core.Queue;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Models.Checkpoints;

/// <summary>
/// The whole training state in one file, in TorchSharp's tensor format: epoch, string metadata (arch, options, …),
/// the model's state dict, the optimiser's state (TorchSharp's <c>save_state_dict</c>), the key queue (keys, indices,
/// pointer) and any extra named tensors (RNG state, cluster assignments, …). Files are written atomically
/// (temporary file, flush and fsync, rename, fsync of the folder), so a crash never leaves a half-written checkpoint
/// under the real name, and end with a SHA-256 of everything before it, checked before anything is loaded: a
/// truncated or corrupted file is reported as such, by name, and never half-loaded.
/// </summary>
public static class TrainingCheckpoint
{
    private const string Magic = "HCSC-CKPT";
    private const int FormatVersion = 2;
    private const int FirstVersionWithChecksum = 2;

    /// <summary>Writes a checkpoint.</summary>
    /// <param name="path">The file to write.</param>
    /// <param name="epoch">The number of epochs completed.</param>
    /// <param name="model">The model (every parameter and buffer is saved).</param>
    /// <param name="optimizer">The optimiser, or <c>null</c>.</param>
    /// <param name="queue">The key queue, or <c>null</c>.</param>
    /// <param name="extraTensors">Further named tensors, or <c>null</c>.</param>
    /// <param name="metadata">Named strings (e.g. <c>arch</c>), or <c>null</c>.</param>
    /// <param name="beforeCommit">
    /// Called when the content has been written to the temporary file and before it replaces <paramref name="path"/>
    /// (a process killed there leaves the previous checkpoint intact); fault-injection tests pause here.
    /// </param>
    public static void Save(
        string path,
        long epoch,
        nn.Module model,
        OptimizerHelper? optimizer = null,
        KeyQueue? queue = null,
        IReadOnlyDictionary<string, Tensor>? extraTensors = null,
        IReadOnlyDictionary<string, string>? metadata = null,
        Action? beforeCommit = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        AtomicFile.Write(path, file =>
        {
            using var stream = new ChecksumTrailer.HashingStream(file);
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(Magic);
            writer.Write(FormatVersion);
            writer.Write(epoch);

            var meta = metadata ?? new Dictionary<string, string>();
            writer.Write(meta.Count);
            foreach (var (key, value) in meta)
            {
                writer.Write(key);
                writer.Write(value);
            }

            WriteTensors(writer, model.state_dict());

            writer.Write(optimizer is not null);
            optimizer?.save_state_dict(writer);

            writer.Write(queue is not null);
            if (queue is not null)
            {
                writer.Write(queue.Length);
                writer.Write(queue.Dim);
                writer.Write(queue.Pointer);
                using var scope = NewDisposeScope();
                queue.Keys.cpu().Save(writer);
                queue.Indices.cpu().Save(writer);
            }

            WriteTensors(writer, extraTensors ?? new Dictionary<string, Tensor>());
            writer.Flush();
            ChecksumTrailer.Append(file, stream.Length, stream.Hash());
            beforeCommit?.Invoke();
        });
    }

    /// <summary>
    /// Checks that <paramref name="path"/> is a complete, uncorrupted checkpoint (its SHA-256 trailer matches) without
    /// loading it; files of format version 1 (no checksum) only have their header checked.
    /// </summary>
    /// <exception cref="InvalidDataException">Not a checkpoint, truncated or corrupted; the message names the file and the problem.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static void Verify(string path)
    {
        using var stream = File.OpenRead(path);
        int version = ReadHeader(stream, path, out _);
        if (version >= FirstVersionWithChecksum)
        {
            ChecksumTrailer.Verify(stream, path);
        }
    }

    /// <summary>
    /// Reads a checkpoint written by <see cref="Save"/> into <paramref name="model"/> (strictly: same keys and shapes),
    /// <paramref name="optimizer"/> and <paramref name="queue"/> when given (they must have been saved).
    /// </summary>
    /// <returns>The epoch, the metadata and the extra tensors (on the CPU, owned by the caller).</returns>
    /// <exception cref="InvalidDataException">Not a checkpoint of this format, or a requested part was not saved.</exception>
    /// <exception cref="StateDictMismatchException">The model's state dict does not fit; every problem is listed.</exception>
    public static CheckpointContents Load(string path, nn.Module model, OptimizerHelper? optimizer = null, KeyQueue? queue = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var stream = File.OpenRead(path);
        int version = ReadHeader(stream, path, out long epoch);
        if (version >= FirstVersionWithChecksum)
        {
            ChecksumTrailer.Verify(stream, path);
        }

        try
        {
            return ReadBody(stream, path, epoch, model, optimizer, queue);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"'{path}' ends before the checkpoint does: the file is truncated.", e);
        }
    }

    // Magic, version and epoch; leaves the stream after them.
    private static int ReadHeader(Stream stream, string path, out long epoch)
    {
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        try
        {
            if (reader.ReadString() != Magic)
            {
                throw new InvalidDataException($"'{path}' is not an Hcsc training checkpoint.");
            }

            int version = reader.ReadInt32();
            if (version < 1 || version > FormatVersion)
            {
                throw new InvalidDataException($"'{path}' has checkpoint format version {version}; this library reads versions 1 to {FormatVersion}.");
            }

            epoch = reader.ReadInt64();
            return version;
        }
        catch (Exception e) when (e is EndOfStreamException or IOException)
        {
            throw new InvalidDataException($"'{path}' is not an Hcsc training checkpoint (it ends within the header: empty or truncated).", e);
        }
    }

    private static CheckpointContents ReadBody(Stream stream, string path, long epoch, nn.Module model, OptimizerHelper? optimizer, KeyQueue? queue)
    {
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var metadataCount = reader.ReadInt32();
        for (var i = 0; i < metadataCount; i++)
        {
            var key = reader.ReadString();
            metadata[key] = reader.ReadString();
        }

        using (var scope = NewDisposeScope())
        {
            var stateDict = ReadTensors(reader);
            StateDictLoading.LoadStrict(model, stateDict, $"'{path}'");
        }

        var hasOptimizer = reader.ReadBoolean();
        if (optimizer is not null && !hasOptimizer)
        {
            throw new InvalidDataException($"'{path}' holds no optimiser state.");
        }

        if (hasOptimizer)
        {
            if (optimizer is null)
            {
                throw new InvalidDataException($"'{path}' holds optimiser state; pass the optimiser to Load so the rest of the file can be read.");
            }

            OptimizerStateFormat.Load(reader, optimizer, $"'{path}'");
        }

        var hasQueue = reader.ReadBoolean();
        if (queue is not null && !hasQueue)
        {
            throw new InvalidDataException($"'{path}' holds no key queue.");
        }

        if (hasQueue)
        {
            var length = reader.ReadInt32();
            var dim = reader.ReadInt32();
            var pointer = reader.ReadInt64();
            using var scope = NewDisposeScope();
            var keys = TensorExtensionMethods.Load(reader);
            var indices = TensorExtensionMethods.Load(reader);
            if (queue is not null)
            {
                if (queue.Length != length || queue.Dim != dim)
                {
                    throw new InvalidDataException($"'{path}' holds a queue of {length} × {dim}; the given queue is {queue.Length} × {queue.Dim}.");
                }

                queue.Restore(keys, indices, pointer);
            }
        }

        var extras = ReadTensors(reader);
        foreach (var tensor in extras.Values)
        {
            tensor.DetachFromDisposeScope();
        }

        return new CheckpointContents(epoch, metadata, extras);
    }

    private static void WriteTensors(BinaryWriter writer, IReadOnlyDictionary<string, Tensor> tensors)
    {
        writer.Write(tensors.Count);
        foreach (var (name, tensor) in tensors)
        {
            writer.Write(name);
            using var scope = NewDisposeScope();
            tensor.detach().cpu().contiguous().Save(writer);
        }
    }

    private static Dictionary<string, Tensor> ReadTensors(BinaryReader reader)
    {
        var count = reader.ReadInt32();
        var result = new Dictionary<string, Tensor>(count, StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var name = reader.ReadString();
            result[name] = TensorExtensionMethods.Load(reader);
        }

        return result;
    }
}
