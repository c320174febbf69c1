#!/bin/sh
# Regenerates the speech clips the audio and Whisper tests use (run once; the WAVs are committed).
# Synthesized with espeak-ng (Debian: apt-get install espeak-ng sox), its native 22050 Hz output
# kept for one clip (resampling is tested on it), every clip also resampled to 16 kHz mono
# 16-bit PCM by sox (what Whisper takes).
set -eu
cd "$(dirname "$0")"
say() {  # name, text
    espeak-ng -v en-us -s 150 -w "$1-22k.wav" "$2"
    sox "$1-22k.wav" -r 16000 -c 1 -b 16 "$1.wav"
}
say hello "Hello world. This is a test of speech recognition."
say fox "The quick brown fox jumps over the lazy dog."
rm -f fox-22k.wav  # only one clip is kept at its original rate
