using System.Collections;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Hcsc.Models.Checkpoints;

/// <summary>
/// Reads and writes PyTorch <c>torch.save</c> files (the zip format of PyTorch ≥ 1.6) holding state dicts, through
/// TorchSharp.PyBridge. Reading accepts a bare state dict (<c>.pth</c>) or a training checkpoint whose
/// <c>state_dict</c> (or <c>model</c>) entry is one (<c>.pth.tar</c>, as MoCo and HCSC save).
/// </summary>
public static class PyTorchStateDict
{
    /// <summary>
    /// Reads the state dict from a PyTorch file: name → CPU tensor (the caller owns the tensors). The file is vetted by
    /// <see cref="UntrustedPyTorchFile.Verify(Stream, string)"/> first, so an untrusted file can neither run code nor
    /// make the loader allocate more than its contents justify.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">
    /// The file is not a readable PyTorch state dict or checkpoint: empty, not a zip archive, truncated, a zip bomb, a tensor
    /// larger than its storage, a missing storage entry, or a pickle that imports anything but tensors (it may be malicious).
    /// </exception>
    public static Dictionary<string, Tensor> Read(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"No PyTorch file at '{path}'.", path);
        }

        Hashtable top;
        using var stream = File.OpenRead(path);

        // Nothing is unpickled before the file is vetted: zip structure, declared sizes, tensor bounds, and only the
        // globals torch.save writes for tensors (the unpickler would otherwise build whatever the pickle names).
        UntrustedPyTorchFile.Verify(stream, path);
        stream.Position = 0;
        try
        {
            top = PyTorchUnpickler.UnpickleStateDict(stream, leaveOpen: true);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException(
                $"'{path}' could not be read as a PyTorch file ({e.Message}). Files written by torch.save in PyTorch 1.6 or later are supported; re-save older ones with torch.save(obj, path) in a recent PyTorch.", e);
        }

        var stateDict = top;
        foreach (var nested in new[] { "state_dict", "model" })
        {
            if (top.ContainsKey(nested) && top[nested] is Hashtable inner)
            {
                stateDict = inner;
                break;
            }
        }

        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in stateDict)
        {
            if (entry.Key is string name && entry.Value is Tensor tensor)
            {
                result[name] = tensor;
            }
        }

        if (result.Count == 0)
        {
            var keys = string.Join(", ", top.Keys.Cast<object>().Select(k => k.ToString()).Take(20));
            throw new InvalidDataException($"'{path}' holds no state dict (top-level keys: {keys}).");
        }

        return result;
    }

    /// <summary>Writes <paramref name="stateDict"/> as a PyTorch file that <c>torch.load</c> reads (atomically: temporary file, then rename).</summary>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(stateDict);
        using var scope = NewDisposeScope();
        var table = new Hashtable();
        foreach (var (name, tensor) in stateDict)
        {
            table[name] = tensor.detach().cpu().contiguous();
        }

        AtomicFile.Write(path, stream => PyTorchPickler.PickleStateDict(stream, table, leaveOpen: true));
    }
}
