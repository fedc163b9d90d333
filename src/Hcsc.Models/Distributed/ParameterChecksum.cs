using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Hcsc.Core.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Models.Distributed;

/// <summary>
/// A deterministic checksum of a module's weights, for the data-parallel invariant "the weights are identical on every
/// rank" (after the initial broadcast and after every step): <see cref="VerifyIdentical"/> compares the ranks' checksums.
/// </summary>
/// <remarks>
/// The checksum is SHA-256 over every parameter (<c>named_parameters()</c>, in order) and, unless left out, every buffer
/// (<c>named_buffers()</c>: batch-norm statistics and counters): for each, its name, dtype and shape, then its values'
/// bytes (copied to the host). Equal weights give equal checksums on any device; one differing bit changes it.
/// </remarks>
public static class ParameterChecksum
{
    /// <summary>The checksum of <paramref name="module"/>'s parameters (and buffers), as 64 lowercase hexadecimal digits.</summary>
    /// <param name="module">The model.</param>
    /// <param name="includeBuffers">Whether the buffers (batch-norm running statistics, counters) count too.</param>
    /// <returns>The SHA-256, hexadecimal.</returns>
    public static string Compute(nn.Module module, bool includeBuffers = true) =>
        Convert.ToHexStringLower(Hash(module, includeBuffers));

    /// <summary>
    /// Throws on every rank unless <paramref name="module"/>'s checksum is the same on every rank of
    /// <paramref name="collectives"/> (collective: every rank calls it).
    /// </summary>
    /// <param name="module">The model, built identically on every rank.</param>
    /// <param name="collectives">The group.</param>
    /// <param name="includeBuffers">Whether the buffers count too.</param>
    /// <exception cref="InvalidOperationException">The checksums differ; the message lists every rank's checksum.</exception>
    public static void VerifyIdentical(nn.Module module, ICollectives collectives, bool includeBuffers = true)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        byte[] local = Hash(module, includeBuffers);
        var all = new byte[local.Length * collectives.Size];
        collectives.AllGather<byte>(local, all);
        var checksums = Enumerable.Range(0, collectives.Size)
            .Select(r => Convert.ToHexStringLower(all, r * local.Length, local.Length))
            .ToArray();
        var differing = Enumerable.Range(1, collectives.Size - 1).Where(r => checksums[r] != checksums[0]).ToArray();
        if (differing.Length > 0)
        {
            throw new InvalidOperationException(
                $"The weights differ between ranks: rank{(differing.Length > 1 ? "s" : "")} {string.Join(", ", differing)} differ from rank 0 " +
                $"({string.Join(", ", checksums.Select((c, r) => $"rank {r}: {c[..16]}…"))}). Data-parallel training keeps every rank's " +
                "weights identical: start from the same weights (broadcast from rank 0) and average the gradients every step.");
        }
    }

    private static unsafe byte[] Hash(nn.Module module, bool includeBuffers)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var entries = module.named_parameters().Select(p => (p.name, (Tensor)p.parameter));
        if (includeBuffers)
        {
            entries = entries.Concat(module.named_buffers().Select(b => (b.name, b.buffer)));
        }

        Span<byte> number = stackalloc byte[sizeof(long)];
        foreach (var (name, tensor) in entries)
        {
            hash.AppendData(Encoding.UTF8.GetBytes(name));
            hash.AppendData([0]);
            BitConverter.TryWriteBytes(number, (long)tensor.dtype);
            hash.AppendData(number);
            BitConverter.TryWriteBytes(number, tensor.dim());
            hash.AppendData(number);
            foreach (long size in tensor.shape)
            {
                BitConverter.TryWriteBytes(number, size);
                hash.AppendData(number);
            }

            long bytes = tensor.numel() * tensor.ElementSize;
            if (bytes == 0)
            {
                continue;
            }

            var host = tensor.detach().to(CPU).contiguous();
            var first = host.view(-1).narrow(0, 0, 1);
            byte* start = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
            for (long done = 0; done < bytes; done += 1L << 30)
            {
                hash.AppendData(new ReadOnlySpan<byte>(start + done, (int)Math.Min(1L << 30, bytes - done)));
            }
        }

        return hash.GetHashAndReset();
    }
}
