using System.Threading.Channels;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;

namespace Hcsc.Samples.ImageNetPretrain.Loading;

/// <summary>
/// Decodes and augments batches on <c>workers</c> threads, <c>prefetch</c> batches ahead of the
/// consumer. Every image's randomness comes from (seed, epoch, index), so batches are identical
/// whatever the thread count. An image that cannot be decoded is replaced by the next decodable one
/// and reported through <see cref="Skipped"/>, so one bad file does not end a long run.
/// The workers write the pixels straight into host tensors that are reused: a disposed <see cref="ImageBatch"/> hands its
/// memory to a later batch (at most <c>prefetch + 2</c> batches' worth while the consumer disposes each before the next).
/// Disposing the loader frees the memory not held by a batch.
/// </summary>
public sealed class BatchLoader : IDisposable
{
    private readonly IImageDataset _dataset;
    private readonly IReadOnlyList<ViewTransform> _views;
    private readonly int _workers;
    private readonly int _prefetch;
    private readonly long _seed;
    private readonly Lazy<BatchSlotPool> _pool;

    /// <summary>Creates a loader of <paramref name="batchSize"/> images with one output per entry of <paramref name="views"/>.</summary>
    public BatchLoader(IImageDataset dataset, IReadOnlyList<ViewTransform> views, int batchSize, int workers, long seed, int prefetch = 2)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        ArgumentNullException.ThrowIfNull(views);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(workers);
        ArgumentOutOfRangeException.ThrowIfLessThan(prefetch, 1);
        if (views.Count == 0)
        {
            throw new ArgumentException("At least one view transform is needed.", nameof(views));
        }

        _dataset = dataset;
        _views = views;
        BatchSize = batchSize;
        _workers = workers;
        _prefetch = prefetch;
        _seed = seed;
        _pool = new(() => new BatchSlotPool([.. _views.Select(v => v.Size)], PinMemory), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>Images per batch.</summary>
    public int BatchSize { get; }

    /// <summary>
    /// Data-parallel training: this rank's index; <see cref="TrainingEpoch"/> yields its strided shard of every global
    /// batch (the rows ShardRank, ShardRank + ShardCount, … of the batch one process would get, with the same
    /// per-image augmentation), so the ranks' shards together are exactly the single-process batch.
    /// </summary>
    public int ShardRank { get; init; }

    /// <summary>The number of ranks the global batch of <see cref="BatchSize"/> is split over (a divisor of it); 1: none.</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>
    /// Whether the batches' host tensors are pinned (page-locked), so <see cref="ImageBatch.View"/> copies them to a CUDA
    /// device asynchronously. Needs CUDA: set it only when the batches go to a CUDA device.
    /// </summary>
    public bool PinMemory { get; init; }

    /// <summary>Batches' worth of host tensors allocated so far (each reused once its batch is disposed).</summary>
    public int BuffersCreated => _pool.IsValueCreated ? _pool.Value.Created : 0;

    /// <summary>Called with the index and error of each image that could not be decoded (from a worker thread).</summary>
    public Action<int, Exception>? Skipped { get; init; }

    /// <summary>Full batches in one shuffled epoch (the last incomplete batch is dropped, as the reference does).</summary>
    public int TrainingBatches => _dataset.Count / BatchSize;

    /// <summary>
    /// The batches of training epoch <paramref name="epoch"/>: a permutation seeded by (seed, epoch),
    /// incomplete last batch dropped. Starts at batch <paramref name="firstBatch"/> (for resuming mid-epoch).
    /// </summary>
    public IEnumerable<ImageBatch> TrainingEpoch(int epoch, int firstBatch = 0, CancellationToken cancellation = default)
    {
        int[] order = Enumerable.Range(0, _dataset.Count).ToArray();
        StableSeed.Random(_seed, epoch, -1).Shuffle(order);
        int count = Math.Max(0, TrainingBatches - firstBatch);
        var batches = Enumerable.Range(firstBatch, count).Select(b => Shard(order.AsMemory(b * BatchSize, BatchSize)));
        return Produce(batches, epoch, [(BatchSize / ShardCount, count)], cancellation);
    }

    /// <summary>Every image once, in dataset order, the last batch possibly smaller (for embedding and evaluation).</summary>
    public IEnumerable<ImageBatch> Sequential(CancellationToken cancellation = default)
    {
        int[] order = Enumerable.Range(0, _dataset.Count).ToArray();
        var batches = Enumerable.Range(0, (order.Length + BatchSize - 1) / BatchSize)
            .Select(b => order.AsMemory(b * BatchSize, Math.Min(BatchSize, order.Length - (b * BatchSize))));
        return Produce(batches, epoch: -1, [(BatchSize, order.Length / BatchSize), (order.Length % BatchSize, 1)], cancellation);
    }

    private Memory<int> Shard(Memory<int> batch)
    {
        if (ShardCount == 1)
        {
            return batch;
        }

        if (batch.Length % ShardCount != 0 || (uint)ShardRank >= (uint)ShardCount)
        {
            throw new InvalidOperationException($"A batch of {batch.Length} cannot be sharded over {ShardCount} ranks (rank {ShardRank}).");
        }

        var mine = new int[batch.Length / ShardCount];
        var all = batch.Span;
        for (int t = 0; t < mine.Length; t++)
        {
            mine[t] = all[ShardRank + (t * ShardCount)];
        }

        return mine;
    }

    // sizes: each batch size the pass has and how many batches of it.
    private IEnumerable<ImageBatch> Produce(IEnumerable<Memory<int>> batches, int epoch, (int Count, int Batches)[] sizes, CancellationToken cancellation)
    {
        if (_workers == 0)
        {
            foreach (var indices in batches)
            {
                cancellation.ThrowIfCancellationRequested();
                yield return Build(indices.Span, epoch, parallel: false);
            }

            yield break;
        }

        foreach (var (count, batchesOfCount) in sizes)
        {
            if (count > 0 && batchesOfCount > 0)
            {
                // Made here, on the consumer's thread: as many as the producer can hold while the consumer disposes each batch.
                _pool.Value.Reserve(count, Math.Min(batchesOfCount, _prefetch + 2));
            }
        }

        var channel = Channel.CreateBounded<ImageBatch>(new BoundedChannelOptions(_prefetch) { SingleWriter = true, SingleReader = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var producer = Task.Run(
            async () =>
            {
                try
                {
                    foreach (var indices in batches)
                    {
                        stop.Token.ThrowIfCancellationRequested();
                        var batch = Build(indices.Span, epoch, parallel: true);
                        try
                        {
                            await channel.Writer.WriteAsync(batch, stop.Token).ConfigureAwait(false);
                        }
                        catch
                        {
                            batch.Dispose();
                            throw;
                        }
                    }

                    channel.Writer.Complete();
                }
                catch (Exception e)
                {
                    // Parallel.For wraps a worker's exception; hand the consumer the error itself.
                    channel.Writer.Complete(e is AggregateException { InnerExceptions.Count: 1 } aggregate ? aggregate.InnerException! : e);
                }
            },
            CancellationToken.None);

        try
        {
            while (true)
            {
                // WaitToReadAsync rethrows the producer's error (the one passed to Complete).
                if (!channel.Reader.WaitToReadAsync(cancellation).AsTask().GetAwaiter().GetResult() || !channel.Reader.TryRead(out var batch))
                {
                    break;
                }

                yield return batch;
            }

            if (channel.Reader.Completion.IsFaulted)
            {
                channel.Reader.Completion.GetAwaiter().GetResult();
            }
        }
        finally
        {
            stop.Cancel();
            try
            {
                producer.GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
            }

            while (channel.Reader.TryRead(out var unread))
            {
                unread.Dispose(); // the consumer stopped early: the prefetched batches' memory goes back to the pool
            }
        }
    }

    private ImageBatch Build(ReadOnlySpan<int> indices, int epoch, bool parallel)
    {
        int count = indices.Length;
        int[] chosen = indices.ToArray();
        var labels = new int[count];
        var dataIndices = new long[count];
        var slot = _pool.Value.Rent(count);
        void One(int i)
        {
            int index = chosen[i];
            using var image = LoadOrReplace(ref index); // a decoded image's bytes go back to the pool
            dataIndices[i] = index;
            labels[i] = _dataset.Labels[index];
            var random = StableSeed.Random(_seed, epoch, index);
            for (int v = 0; v < _views.Count; v++)
            {
                _views[v].Apply(image, random, slot.Image(v, i)); // every float of the image is written: reuse leaves nothing stale
            }
        }

        try
        {
            if (parallel && _workers > 1)
            {
                Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = _workers }, One);
            }
            else
            {
                for (int i = 0; i < count; i++)
                {
                    One(i);
                }
            }
        }
        catch
        {
            _pool.Value.Return(slot);
            throw;
        }

        return new ImageBatch(slot, _pool.Value, dataIndices, labels);
    }

    /// <summary>Frees the host tensors no batch holds; those of batches not yet disposed are freed with them.</summary>
    public void Dispose()
    {
        if (_pool.IsValueCreated)
        {
            _pool.Value.Dispose();
        }
    }

    private RgbImage LoadOrReplace(ref int index)
    {
        int first = index, attempts = Math.Min(_dataset.Count, 100);
        for (int attempt = 0; attempt < attempts; attempt++)
        {
            try
            {
                return _dataset.Load(index);
            }
            catch (InvalidDataException e)
            {
                Skipped?.Invoke(index, e);
                index = (index + 1) % _dataset.Count;
            }
        }

        throw new InvalidDataException($"{attempts} consecutive images from index {first} could not be decoded; check the dataset.");
    }
}
