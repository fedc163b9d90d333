using Hcsc.Core.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Models.Optimization;

/// <summary>
/// A set of parameters packed into one contiguous buffer: every parameter becomes a view of its slice of
/// <see cref="Values"/> [N] (N = Σ numel), and, when gradients are packed too, every gradient a view of its slice of
/// <see cref="Gradients"/> [N]. An elementwise update over all of them is then one kernel on the flat buffer instead of
/// one per parameter (about 160 for ResNet-50): <see cref="ExplicitScalarSgd"/> and the EMA of
/// <see cref="Momentum.MomentumUpdate"/> use it. The values are unchanged by packing; elementwise results are
/// bit-identical to the per-parameter loop.
/// </summary>
/// <remarks>
/// <para>
/// Autograd accumulates into an existing gradient in place, so after <see cref="ZeroGradients"/> a backward pass fills
/// <see cref="Gradients"/> directly (PyTorch DistributedDataParallel's <c>gradient_as_bucket_view</c>). Do not set the
/// gradients to null between <see cref="ZeroGradients"/> and the optimiser's step.
/// </para>
/// <para>
/// Pack after the module is on its device and in its dtype: moving a module replaces its parameters, which then no longer
/// share this buffer. Loading a state dict copies into the parameters in place and keeps the packing.
/// </para>
/// </remarks>
public sealed class FlatParameters : IDisposable
{
    private readonly Tensor[] _gradientViews;

    private FlatParameters(IReadOnlyList<(string Name, Parameter Parameter)> parameters, Tensor values, Tensor? gradients, Tensor[] gradientViews)
    {
        Names = parameters.Select(p => p.Name).ToArray();
        Parameters = parameters.Select(p => p.Parameter).ToArray();
        Values = values;
        Gradients = gradients;
        _gradientViews = gradientViews;
    }

    /// <summary>The parameters' names, in buffer order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The packed parameters, in buffer order; each is a view of its slice of <see cref="Values"/>.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>All the values, [N], the parameters' slices in order.</summary>
    public Tensor Values { get; }

    /// <summary>All the gradients, [N], in the same layout as <see cref="Values"/>; <c>null</c> when gradients were not packed.</summary>
    public Tensor? Gradients { get; }

    /// <summary>Elements in the buffer (N).</summary>
    public long Count => Values.shape[0];

    /// <summary>
    /// Packs <paramref name="parameters"/> (one dtype, one device) into a new buffer, copying their values; with
    /// <paramref name="packGradients"/> their gradients become zeroed views of a second buffer.
    /// </summary>
    /// <param name="parameters">Named parameters, e.g. <c>module.named_parameters()</c>; the order is kept.</param>
    /// <param name="packGradients">Pack the gradients too (parameters that are trained); false for e.g. an EMA target.</param>
    /// <exception cref="ArgumentException">No parameters, or they differ in dtype or device.</exception>
    public static FlatParameters Pack(IEnumerable<(string Name, Parameter Parameter)> parameters, bool packGradients)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var list = parameters.ToList();
        if (list.Count == 0)
        {
            throw new ArgumentException("There are no parameters to pack.", nameof(parameters));
        }

        var (dtype, device) = (list[0].Parameter.dtype, list[0].Parameter.device);
        var odd = list.FirstOrDefault(p => p.Parameter.dtype != dtype || !DeviceEquality.SameDevice(p.Parameter.device, device));
        if (odd.Parameter is not null)
        {
            throw new ArgumentException(
                $"One buffer holds one dtype on one device: '{odd.Name}' is {odd.Parameter.dtype} on {odd.Parameter.device}, '{list[0].Name}' {dtype} on {device}. Pack each kind apart.",
                nameof(parameters));
        }

        long count = list.Sum(p => p.Parameter.numel());
        var values = empty([count], dtype, device);
        var gradients = packGradients ? zeros([count], dtype, device) : null;
        var gradientViews = new Tensor[packGradients ? list.Count : 0];
        using (no_grad())
        {
            long offset = 0;
            for (int i = 0; i < list.Count; i++)
            {
                var parameter = list[i].Parameter;
                long n = parameter.numel();
                using var slice = values.narrow(0, offset, n).view(parameter.shape);
                slice.copy_(parameter);
                parameter.set_(slice);
                if (gradients is not null)
                {
                    gradientViews[i] = gradients.narrow(0, offset, n).view(parameter.shape);
                }

                offset += n;
            }
        }

        var packed = new FlatParameters(list, values, gradients, gradientViews);
        packed.AttachGradients();
        return packed;
    }

    /// <summary>
    /// Zeroes <see cref="Gradients"/> (one kernel) and makes each parameter's gradient its view again, so the next
    /// backward pass accumulates into the buffer. Call it where an optimiser's <c>zero_grad</c> would be called.
    /// </summary>
    /// <exception cref="InvalidOperationException">Gradients were not packed.</exception>
    public void ZeroGradients()
    {
        if (Gradients is null)
        {
            throw new InvalidOperationException("This buffer was packed without gradients (packGradients: false).");
        }

        Gradients.zero_();
        AttachGradients();
    }

    /// <summary>
    /// True when <paramref name="other"/> holds parameters of the same names and shapes in the same order, so that slice
    /// i of one buffer is parameter i of the other (e.g. a query and a key encoder).
    /// </summary>
    public bool HasSameLayout(FlatParameters other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Names.SequenceEqual(other.Names)
            && Parameters.Zip(other.Parameters).All(p => p.First.shape.SequenceEqual(p.Second.shape))
            && Values.dtype == other.Values.dtype
            && DeviceEquality.SameDevice(Values.device, other.Values.device);
    }

    /// <summary>Releases the buffers' handles (the parameters keep the storage alive while they exist).</summary>
    public void Dispose()
    {
        foreach (var view in _gradientViews)
        {
            view.Dispose();
        }

        Gradients?.Dispose();
        Values.Dispose();
    }

    private void AttachGradients()
    {
        for (int i = 0; i < _gradientViews.Length; i++)
        {
            Parameters[i].grad = _gradientViews[i];
        }
    }
}
