using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Hcsc.Models.Checkpoints;

/// <summary>
/// The end of a checkpoint file: the length of everything before it (int64, little-endian), the SHA-256 of those
/// bytes and the marker <c>HCSC-END</c>; 48 bytes. A file cut short loses the marker, a changed byte the hash.
/// </summary>
internal static class ChecksumTrailer
{
    private const int HashSize = 32;
    private const int Size = sizeof(long) + HashSize + 8;
    private static readonly byte[] EndMarker = "HCSC-END"u8.ToArray();

    /// <summary>Writes the trailer for a body of <paramref name="bodyLength"/> bytes with SHA-256 <paramref name="hash"/>.</summary>
    public static void Append(Stream file, long bodyLength, byte[] hash)
    {
        Span<byte> trailer = stackalloc byte[Size];
        BinaryPrimitives.WriteInt64LittleEndian(trailer, bodyLength);
        hash.CopyTo(trailer[sizeof(long)..]);
        EndMarker.CopyTo(trailer[(sizeof(long) + HashSize)..]);
        file.Write(trailer);
    }

    /// <summary>Checks the trailer and the hash of the body; the stream's position is kept.</summary>
    /// <exception cref="InvalidDataException">Truncated (no complete trailer, or a length that does not match) or corrupted (hash mismatch).</exception>
    public static void Verify(Stream stream, string path)
    {
        long position = stream.Position;
        long length = stream.Length;
        if (length < Size)
        {
            throw new InvalidDataException($"'{path}' is truncated: {length} bytes, shorter than a checkpoint's checksum trailer.");
        }

        Span<byte> trailer = stackalloc byte[Size];
        stream.Position = length - Size;
        stream.ReadExactly(trailer);
        if (!trailer[(sizeof(long) + HashSize)..].SequenceEqual(EndMarker))
        {
            throw new InvalidDataException($"'{path}' is truncated or was not written to the end: its checksum trailer is missing.");
        }

        long bodyLength = BinaryPrimitives.ReadInt64LittleEndian(trailer);
        if (bodyLength != length - Size)
        {
            throw new InvalidDataException($"'{path}' is damaged: it records {bodyLength + Size} bytes but has {length}.");
        }

        stream.Position = 0;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 20];
        long remaining = bodyLength;
        while (remaining > 0)
        {
            int read = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, remaining));
            if (read == 0)
            {
                throw new InvalidDataException($"'{path}' is truncated.");
            }

            hash.AppendData(buffer, 0, read);
            remaining -= read;
        }

        if (!hash.GetHashAndReset().AsSpan().SequenceEqual(trailer.Slice(sizeof(long), HashSize)))
        {
            throw new InvalidDataException($"'{path}' is corrupted: its SHA-256 does not match the checksum written with it.");
        }

        stream.Position = position;
    }

    /// <summary>A write-only pass-through that hashes (SHA-256) and counts what is written; it never closes the inner stream.</summary>
    public sealed class HashingStream(Stream inner) : Stream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private long _written;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => _written;

        public override long Position { get => _written; set => throw new NotSupportedException(); }

        /// <summary>The SHA-256 of everything written so far.</summary>
        public byte[] Hash() => _hash.GetCurrentHash();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _hash.AppendData(buffer);
            inner.Write(buffer);
            _written += buffer.Length;
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _hash.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
