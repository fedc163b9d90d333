using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>Input checks shared by the losses and selectors; every failure is an <see cref="ArgumentException"/> naming the tensors and their shapes.</summary>
internal static class Guard
{
    public static void Matrix(Tensor tensor, string name, string shape)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.dim() != 2 || !is_floating_point(tensor))
        {
            throw new ArgumentException($"{name} must be a 2-D floating-point tensor {shape}; got {tensor.Describe()}.", name);
        }

        if (tensor.shape[0] == 0 || tensor.shape[1] == 0)
        {
            throw new ArgumentException($"{name} must not be empty {shape}; got {tensor.Describe()}.", name);
        }
    }

    /// <summary>Every row of <paramref name="rows"/> [B, d] has L2 norm 1 within <paramref name="tolerance"/> (one device sync).</summary>
    public static void UnitRows(Tensor rows, string name, double tolerance)
    {
        using var scope = NewDisposeScope();
        using var one = 1.0.ToScalar();
        var norms = linalg.vector_norm(rows.detach().to(ScalarType.Float64), dims: [1]);   // [B]
        var worstRow = norms.sub(one).abs().argmax().reshape(1);                              // [1]
        var read = cat([worstRow.to(ScalarType.Float64), norms.index_select(0, worstRow)]).cpu().data<double>(); // one sync
        var (worst, norm) = ((long)read[0], read[1]);
        if (!(Math.Abs(norm - 1) <= tolerance))
        {
            throw new ArgumentException(
                $"{name} must hold unit-norm rows (L2-normalised embeddings); row {worst} of {rows.Describe()} has norm {norm:G6}. " +
                "Normalise the encoder's output with nn.functional.normalize(x, dim: 1), or turn Objective:CheckUnitNorm off.", name);
        }
    }

    public static void Indices(Tensor tensor, string name, long length)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.dim() != 1 || tensor.dtype != ScalarType.Int64 || tensor.shape[0] != length)
        {
            throw new ArgumentException($"{name} must be a 1-D int64 tensor [{length}]; got {tensor.Describe()}.", name);
        }
    }

    public static void Labels(Tensor tensor, string name)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.dim() != 1 || tensor.dtype != ScalarType.Int64 || tensor.shape[0] == 0)
        {
            throw new ArgumentException($"{name} must be a non-empty 1-D int64 tensor [B]; got {tensor.Describe()}.", name);
        }
    }

    public static void Vector(Tensor tensor, string name, long length)
    {
        ArgumentNullException.ThrowIfNull(tensor, name);
        if (tensor.dim() != 1 || !is_floating_point(tensor) || tensor.shape[0] != length)
        {
            throw new ArgumentException($"{name} must be a 1-D floating-point tensor [{length}]; got {tensor.Describe()}.", name);
        }
    }

    public static void SameShape(Tensor tensor, string name, Tensor reference, string referenceName)
    {
        if (!tensor.shape.SequenceEqual(reference.shape))
        {
            throw new ArgumentException($"{name} must have the shape of {referenceName}; got {name} {tensor.Describe()} and {referenceName} {reference.Describe()}.", name);
        }
    }

    public static void SameDtypeAndDevice(Tensor tensor, string name, Tensor reference, string referenceName)
    {
        if (tensor.dtype != reference.dtype)
        {
            throw new ArgumentException($"{name} and {referenceName} must have the same dtype; got {name} {tensor.Describe()} and {referenceName} {reference.Describe()}.", name);
        }

        SameDevice(tensor, name, reference, referenceName);
    }

    public static void SameDevice(Tensor tensor, string name, Tensor reference, string referenceName)
    {
        if (!DeviceEquality.SameDevice(tensor, reference))
        {
            throw new ArgumentException($"{name} and {referenceName} must be on the same device; got {name} {tensor.Describe()} and {referenceName} {reference.Describe()}.", name);
        }
    }

    public static void EmbeddingSize(Tensor tensor, string name, long size, string what)
    {
        if (tensor.shape[^1] != size)
        {
            throw new ArgumentException($"{name} ({tensor.Describe()}) has embedding size {tensor.shape[^1]} but {what} has {size}.", name);
        }
    }

    public static void Temperature(double temperature, string name)
    {
        if (HcscOptionsValidator.TemperatureProblem(temperature) is { } problem)
        {
            throw new ArgumentOutOfRangeException(name, temperature, problem);
        }
    }

    public static void Level(ClusterLevel level, Tensor reference, string referenceName)
    {
        ArgumentNullException.ThrowIfNull(level);
        SameDevice(level.Prototypes, $"level {level.Index} prototypes", reference, referenceName);
        EmbeddingSize(reference, referenceName, level.Prototypes.shape[1], $"level {level.Index} prototypes {level.Prototypes.Describe()}");
    }

    /// <summary>
    /// Checks that every value of <paramref name="indices"/> lies in [0, <paramref name="upper"/>). This reads
    /// the tensor back, so it only runs on CPU tensors (free there) or when <paramref name="force"/> is set.
    /// </summary>
    public static void Range(Tensor indices, string name, long upper, string what, bool force)
    {
        if (indices.shape[0] == 0 || (indices.device.type != TorchSharp.DeviceType.CPU && !force))
        {
            return;
        }

        using var scope = NewDisposeScope();
        long min = indices.min().item<long>();
        long max = indices.max().item<long>();
        if (min < 0 || max >= upper)
        {
            throw new ArgumentException($"{name} must lie in [0, {upper}) ({what}); found values from {min} to {max} in {indices.Describe()}.", name);
        }
    }
}
