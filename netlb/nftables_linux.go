package netlb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// nf_tables netlink constants (linux/netfilter/nfnetlink.h, nf_tables.h).
const (
	nfnlMsgBatchBegin  = unix.NLMSG_MIN_TYPE // 0x10
	nfnlMsgBatchEnd    = unix.NLMSG_MIN_TYPE + 1
	nfnlSubsysNFTables = 10
	nftMsgDelTable     = 2
	nftaTableName      = 1
)

// errNoTable means the nf_tables table to delete does not exist.
var errNoTable = errors.New("no such nf_tables table")

// deleteNFTable deletes the nf_tables table "ip <name>" in the calling
// thread's network namespace, through netlink, so that no nft binary is
// needed. The kernel deletes the table with whatever it holds: callers
// check first that it holds nothing of anyone else's.
func deleteNFTable(name string) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netfilter netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind netfilter netlink socket: %w", err)
	}
	const seq = 1
	msg := func(typ uint16, flags uint16, seq uint32, family uint8, resID uint16, attrs []byte) []byte {
		b := make([]byte, unix.NLMSG_HDRLEN+4, unix.NLMSG_HDRLEN+4+len(attrs))
		b = append(b, attrs...)
		binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
		binary.NativeEndian.PutUint16(b[4:], typ)
		binary.NativeEndian.PutUint16(b[6:], flags)
		binary.NativeEndian.PutUint32(b[8:], seq)
		// nfgenmsg: family, version, res_id (big endian).
		b[16] = family
		b[17] = 0 // NFNETLINK_V0
		binary.BigEndian.PutUint16(b[18:], resID)
		return b
	}
	// The attribute: NFTA_TABLE_NAME, a NUL-terminated string, padded to 4.
	val := append([]byte(name), 0)
	attr := make([]byte, 4, 4+len(val)+3)
	binary.NativeEndian.PutUint16(attr[0:], uint16(4+len(val)))
	binary.NativeEndian.PutUint16(attr[2:], nftaTableName)
	attr = append(attr, val...)
	for len(attr)%4 != 0 {
		attr = append(attr, 0)
	}
	var batch []byte
	batch = append(batch, msg(nfnlMsgBatchBegin, unix.NLM_F_REQUEST, seq, unix.AF_UNSPEC, nfnlSubsysNFTables, nil)...)
	batch = append(batch, msg(nfnlSubsysNFTables<<8|nftMsgDelTable, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq+1, unix.AF_INET, 0, attr)...)
	batch = append(batch, msg(nfnlMsgBatchEnd, unix.NLM_F_REQUEST, seq+2, unix.AF_UNSPEC, nfnlSubsysNFTables, nil)...)
	if err := unix.Sendto(fd, batch, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send nf_tables batch: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("read nf_tables answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parse nf_tables answer: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq != seq+1 || len(m.Data) < 4 {
				continue
			}
			switch errno := -int32(binary.NativeEndian.Uint32(m.Data[:4])); errno {
			case 0:
				return nil
			case int32(unix.ENOENT):
				return errNoTable
			default:
				return fmt.Errorf("delete nf_tables table ip %s: %w", name, unix.Errno(errno))
			}
		}
	}
}
