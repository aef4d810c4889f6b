package io.lora4j.tokenizer;

import io.lora4j.io.Quoted;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads sentencepiece's {@code tokenizer.model} (a serialized {@code ModelProto},
 * sentencepiece_model.proto) without a protobuf library. Fields used:
 * <pre>
 * ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
 * SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default NORMAL)
 * TrainerSpec     3 model_type (1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR), 40 unk_id (default 0),
 *                 41 bos_id (1), 42 eos_id (2), 43 pad_id (-1)
 * NormalizerSpec  1 name, 2 precompiled_charsmap, 3 add_dummy_prefix (true),
 *                 4 remove_extra_whitespaces (true), 5 escape_whitespaces (true)
 * </pre>
 */
final class SentencePieceModelReader {
    private SentencePieceModelReader() {}

    static SentencePieceBpe.Vocab read(Path file, byte[] data) throws TokenizerException {
        ProtoReader r = new ProtoReader(file, data);
        List<String> pieces = new ArrayList<>();
        List<Float> scores = new ArrayList<>();
        List<Byte> types = new ArrayList<>();
        int modelType = 1; // proto default UNIGRAM: a file without trainer_spec is not known to be BPE
        boolean sawTrainer = false;
        int unkId = 0, bosId = 1, eosId = 2, padId = -1;
        boolean addDummyPrefix = true, removeExtraWhitespaces = true, escapeWhitespaces = true;
        String normalizerName = "";
        int charsmapLength = 0;
        while (r.hasMore()) {
            int tag = r.readTag();
            int field = tag >>> 3, wire = tag & 7;
            if (field == 1 && wire == ProtoReader.LEN) {
                ProtoReader p = r.readMessage();
                String piece = null;
                float score = 0;
                int type = SentencePieceBpe.NORMAL;
                while (p.hasMore()) {
                    int t = p.readTag();
                    int f = t >>> 3, w = t & 7;
                    if (f == 1 && w == ProtoReader.LEN) piece = p.readString();
                    else if (f == 2 && w == ProtoReader.I32) score = p.readFloat();
                    else if (f == 3 && w == ProtoReader.VARINT) type = (int) p.readVarint();
                    else p.skip(w);
                }
                if (piece == null) throw new TokenizerException(file, "piece " + pieces.size() + " has no string");
                if (type < 1 || type > 6)
                    throw new TokenizerException(file, "piece " + pieces.size() + " has unknown type " + type);
                pieces.add(piece);
                scores.add(score);
                types.add((byte) type);
            } else if (field == 2 && wire == ProtoReader.LEN) {
                sawTrainer = true;
                ProtoReader t = r.readMessage();
                while (t.hasMore()) {
                    int tg = t.readTag();
                    int f = tg >>> 3, w = tg & 7;
                    if (w != ProtoReader.VARINT || (f != 3 && (f < 40 || f > 43))) {
                        t.skip(w);
                        continue;
                    }
                    int v = (int) t.readVarint(); // int32 fields: negative values are sign-extended varints
                    switch (f) {
                        case 3 -> modelType = v;
                        case 40 -> unkId = v;
                        case 41 -> bosId = v;
                        case 42 -> eosId = v;
                        case 43 -> padId = v;
                        default -> { }
                    }
                }
            } else if (field == 3 && wire == ProtoReader.LEN) {
                ProtoReader n = r.readMessage();
                while (n.hasMore()) {
                    int tg = n.readTag();
                    int f = tg >>> 3, w = tg & 7;
                    if (f == 1 && w == ProtoReader.LEN) normalizerName = n.readString();
                    else if (f == 2 && w == ProtoReader.LEN) charsmapLength = n.readMessage().remaining();
                    else if (f >= 3 && f <= 5 && w == ProtoReader.VARINT) {
                        boolean v = n.readVarint() != 0;
                        if (f == 3) addDummyPrefix = v;
                        else if (f == 4) removeExtraWhitespaces = v;
                        else escapeWhitespaces = v;
                    } else n.skip(w);
                }
            } else {
                r.skip(wire);
            }
        }
        if (pieces.isEmpty()) throw new TokenizerException(file, "no pieces (not a sentencepiece model, or empty)");
        if (!sawTrainer) throw new TokenizerException(file, "no trainer_spec: cannot tell the model type");
        if (modelType != 2)
            throw new TokenizerException(file, "sentencepiece model type " + modelTypeName(modelType)
                    + " is not supported (only BPE, as in Llama 2)");
        // A precompiled charsmap is a compiled NFKC-style normaliser; applying none would silently
        // tokenize differently, so refuse. Llama 2 (and Mistral, Gemma) use "identity".
        if (charsmapLength > 0)
            throw new TokenizerException(file, "normalizer " + Quoted.of(normalizerName)
                    + " (a precompiled charsmap) is not supported; only identity normalisation is");
        if (!escapeWhitespaces)
            throw new TokenizerException(file, "normalizer_spec.escape_whitespaces=false is not supported");
        int n = pieces.size();
        String[] p = pieces.toArray(new String[0]);
        float[] s = new float[n];
        byte[] t = new byte[n];
        for (int i = 0; i < n; i++) {
            s[i] = scores.get(i);
            t[i] = types.get(i);
        }
        return new SentencePieceBpe.Vocab(p, s, t, unkId, bosId, eosId, padId, addDummyPrefix, removeExtraWhitespaces);
    }

    private static String modelTypeName(int t) {
        return switch (t) {
            case 1 -> "UNIGRAM";
            case 2 -> "BPE";
            case 3 -> "WORD";
            case 4 -> "CHAR";
            default -> String.valueOf(t);
        };
    }
}
